using System.Globalization;
using WeCoLoRA.Checkpoints;
using WeCoLoRA.Data;
using WeCoLoRA.Export;
using WeCoLoRA.Models;
using WeCoLoRA.Tests.Cli;
using static TorchSharp.torch;

namespace WeCoLoRA.Tests.Export;

[Collection(nameof(ConsoleCollection))]
public sealed class PredictCliTests
{
    static string Images => Fixture.Path("models", "images");

    /// <summary>(image, rank, class, probability) rows of a predict --csv file.</summary>
    static List<(string Image, int Rank, string Class, double P)> ReadTopK(string csv) =>
        File.ReadAllLines(csv).Skip(1).Select(l => l.Split(','))
            .Select(f => (f[0], int.Parse(f[1], CultureInfo.InvariantCulture), f[3], double.Parse(f[4], CultureInfo.InvariantCulture))).ToList();

    [Fact]
    public void Onnx_and_torchsharp_predict_the_same_top_classes()
    {
        var dir = Fixture.TempDir();
        var loaded = ModelLoader.Load(Fixture.Path("models", "timm_hub"));
        OnnxExporter.ExportFolder(loaded.Model, Path.Combine(dir, "onnx"), labelNames: ["cat", "dog", "eel", "fox", "gnu"]);

        var (code, stdout, stderr) = CliRunner.Run("predict", "--model", Path.Combine(dir, "onnx", "model.onnx"), "--data", Images,
            "--top", "3", "--csv", Path.Combine(dir, "onnx.csv"));
        Assert.True(code == 0, stderr);
        Assert.Contains("probability", stdout);
        Assert.Contains("sub/c.png", stdout);
        (code, _, stderr) = CliRunner.Run("predict", "--model", Fixture.Path("models", "timm_hub"), "--data", Images,
            "--top", "3", "--csv", Path.Combine(dir, "torch.csv"), "--batch-size", "3");
        Assert.True(code == 0, stderr);

        var onnx = ReadTopK(Path.Combine(dir, "onnx.csv"));
        var torch = ReadTopK(Path.Combine(dir, "torch.csv"));
        Assert.Equal(4 * 3, onnx.Count);
        Assert.Equal(torch.Select(r => (r.Image, r.Rank)), onnx.Select(r => (r.Image, r.Rank)));
        Assert.All(onnx, r => Assert.Contains(r.Class, new[] { "cat", "dog", "eel", "fox", "gnu" })); // names from the exported config.json
        Assert.All(torch, r => Assert.Matches("^[0-4]$", r.Class)); // the hub config has no label names: indices
        Assert.All(onnx.Zip(torch), p => Assert.True(Math.Abs(p.First.P - p.Second.P) <= 1e-4, $"{p.First} vs {p.Second}"));
        foreach (var image in onnx.GroupBy(r => r.Image))
            Assert.True(image.Select(r => r.P).SequenceEqual(image.Select(r => r.P).OrderDescending()));
    }

    [Fact]
    public void A_headless_onnx_model_writes_its_features_to_csv()
    {
        using var _ = no_grad();
        manual_seed(3);
        var cfg = new VitConfig { ImgSize = 32, PatchSize = 8, EmbedDim = 48, Depth = 2, NumHeads = 3, NumClasses = 0, GlobalPool = GlobalPool.Avg, Mean = [0.5f, 0.5f, 0.5f], Std = [0.5f, 0.5f, 0.5f] };
        using var model = new VisionTransformer(cfg);
        foreach (var p in model.parameters()) p.normal_(0, 0.2);
        model.eval();
        var dir = Fixture.TempDir();
        var onnxPath = OnnxExporter.ExportFolder(model, dir);
        var csv = Path.Combine(dir, "features.csv");

        var (code, _, stderr) = CliRunner.Run("predict", "--model", onnxPath, "--data", Images, "--csv", csv);
        Assert.True(code == 0, stderr);

        var lines = File.ReadAllLines(csv);
        Assert.Equal("image," + string.Join(",", Enumerable.Range(0, 48).Select(i => $"f{i}")), lines[0]);
        var items = ImageFolders.ListAll(Images);
        using var expected = global::WeCoLoRA.Evaluation.FeatureExtractor.Extract(model, items, ModelPreprocess.For(cfg), global::WeCoLoRA.Evaluation.FeatureKind.Avg);
        Assert.Equal(items.Count + 1, lines.Length);
        using var actual = tensor(lines.Skip(1).SelectMany(l => l.Split(',').Skip(1).Select(v => float.Parse(v, CultureInfo.InvariantCulture))).ToArray()).reshape(items.Count, 48);
        Assert.True(Fixture.MaxAbsDiff(actual, expected) <= 1e-4);
        Assert.Equal(items.Select(i => i.RelativePath), lines.Skip(1).Select(l => l.Split(',')[0]));
    }

    [Fact]
    public void Predict_errors_are_one_line()
    {
        var dir = Fixture.TempDir();
        File.WriteAllText(Path.Combine(dir, "model.onnx"), "x");
        var (code, _, err) = CliRunner.Run("predict", "--model", Path.Combine(dir, "model.onnx"), "--data", Images);
        Assert.Equal(1, code);
        Assert.Contains("config.json", err);
        Assert.Single(err.Trim().Split('\n'));

        File.WriteAllText(Path.Combine(dir, "config.json"), "{\"architecture\": \"vit_base_patch16_224\"}");
        (code, _, err) = CliRunner.Run("predict", "--model", Path.Combine(dir, "model.onnx"), "--data", Images);
        Assert.Equal(1, code);
        Assert.Contains("ONNX Runtime cannot load it", err);
        Assert.Single(err.Trim().Split('\n'));

        (code, _, err) = CliRunner.Run("predict", "--model", Path.Combine(dir, "model.onnx"), "--data", Images, "--img-size", "64");
        Assert.Equal(1, code);
        Assert.Contains("--img-size", err);

        (code, _, err) = CliRunner.Run("predict", "--model", Fixture.Path("models", "timm_hub"), "--data", Images, "--top", "0");
        Assert.Equal(1, code);
        Assert.Contains("--top 0", err);
    }
}
