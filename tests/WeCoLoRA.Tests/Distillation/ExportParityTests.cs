using System.Diagnostics;
using System.Text.Json.Nodes;
using WeCoLoRA.Checkpoints;
using WeCoLoRA.Data;
using WeCoLoRA.Distillation;
using WeCoLoRA.Evaluation;
using static TorchSharp.torch;

namespace WeCoLoRA.Tests.Distillation;

/// <summary>
/// An exported student is a timm ViT: PyTorch loads it strictly and computes the same features
/// (Fixtures/export: make_export_fixture.sh made student/ with this tool, check_export.py made golden.safetensors).
/// </summary>
public sealed class ExportParityTests
{
    static readonly string Images = Fixture.Path("models", "images");

    static void AssertFeaturesMatch(string exportDir, Dictionary<string, Tensor> golden)
    {
        var loaded = ModelLoader.Load(exportDir);
        var items = ImageFolders.ListAll(Images);
        var pre = ModelPreprocess.For(loaded.Config);
        using var cls = FeatureExtractor.Extract(loaded.Model, items, pre, FeatureKind.Cls);
        using var tokens = FeatureExtractor.Extract(loaded.Model, items, pre, FeatureKind.Tokens);
        Assert.True(Fixture.MaxAbsDiff(cls, golden["cls"]) <= 1e-4);
        Assert.True(Fixture.MaxAbsDiff(tokens, golden["tokens"]) <= 1e-4);
    }

    [Fact]
    public void The_committed_export_gives_pytorchs_features()
    {
        AssertFeaturesMatch(Fixture.Path("export", "student"), SafeTensors.Load(Fixture.Path("export", "golden.safetensors")));
    }

    static string FreshExport()
    {
        var run = Path.Combine(Fixture.TempDir(), "run");
        new Distiller(new DistillSettings
        {
            Teacher = Fixture.Path("models", "timm_hub"), Data = Images, Out = run, Epochs = 2, BatchSize = 2, Rank = 4, NoAugment = true, Lr = 2e-2, WarmupEpochs = 1,
        }).Run();
        var export = Path.Combine(Fixture.TempDir(), "export");
        ModelExport.ToFolder(ModelLoader.Load(run), export, merge: true);
        return export;
    }

    [Fact]
    public void A_fresh_export_has_the_committed_exports_keys_shapes_dtypes_and_config()
    {
        var export = FreshExport();
        var fresh = SafeTensors.Load(Path.Combine(export, "model.safetensors"));
        var committed = SafeTensors.Load(Fixture.Path("export", "student", "model.safetensors"));
        Assert.Equal(committed.Keys.Order(), fresh.Keys.Order());
        foreach (var (k, v) in committed)
            Assert.Equal((string.Join(",", v.shape), v.dtype), (string.Join(",", fresh[k].shape), fresh[k].dtype));
        var a = JsonNode.Parse(File.ReadAllText(Path.Combine(export, "config.json")))!;
        var b = JsonNode.Parse(File.ReadAllText(Fixture.Path("export", "student", "config.json")))!;
        Assert.True(JsonNode.DeepEquals(a, b), $"{a.ToJsonString()} vs {b.ToJsonString()}");
    }

    /// <summary>Runs PyTorch on a fresh export when Debian's python3-torch is installed (CI installs it).</summary>
    [Fact]
    public void Pytorch_loads_a_fresh_export_strictly_and_agrees()
    {
        if (!PythonTorchAvailable())
        {
            Assert.Null(Environment.GetEnvironmentVariable("CI")); // CI must run this check, not skip it
            return;
        }
        var export = FreshExport();
        var golden = Path.Combine(Fixture.TempDir(), "golden.safetensors");
        var (code, output) = RunPython(Fixture.Path("export", "check_export.py"), export, Images, golden);
        Assert.True(code == 0, output);
        AssertFeaturesMatch(export, SafeTensors.Load(golden));
    }

    static bool PythonTorchAvailable() => File.Exists("/usr/bin/python3") && RunPython("-c", "import torch, torchvision").Code == 0;

    static (int Code, string Output) RunPython(params string[] args)
    {
        var psi = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var output = p.StandardOutput.ReadToEndAsync();
        var error = p.StandardError.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output.Result + error);
    }
}
