using WeCoLoRA.Checkpoints;
using WeCoLoRA.Export;
using WeCoLoRA.Lora;
using WeCoLoRA.Models;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace WeCoLoRA.Tests.Export;

public sealed class OnnxExportTests(ITestOutputHelper output)
{
    const double Fp32Tolerance = 1e-4;
    // float16 weights and activations (LayerNorm statistics in float32): measured ~2.6e-3 on the tiny fixtures.
    const double Fp16Tolerance = 1e-2;

    static LoadedModel Load(string name) => name switch
    {
        "timm_hub" => ModelLoader.Load(Fixture.Path("models", "timm_hub")),
        "mae_finetuned" => ModelLoader.Load(Fixture.Path("models", "mae_finetuned.pth"), new LoadOptions { NumHeads = 3 }),
        _ => throw new ArgumentException(name),
    };

    /// <summary>TorchSharp's pooled features and (for models with a head) logits for a batch.</summary>
    static (Tensor Features, Tensor? Logits) Reference(VisionTransformer model, Tensor x)
    {
        using var _ = no_grad();
        model.eval();
        using var tokens = model.ForwardTokens(x);
        var features = model.Pool(tokens);
        return (features, model.HasHead ? model.call(x) : null);
    }

    static Tensor Images(VisionTransformer model, int batch, int seed)
    {
        var gen = new Generator((ulong)seed);
        var c = model.Config;
        return randn([batch, c.InChans, c.ImgSize, c.ImgSize], generator: gen);
    }

    /// <summary>Max abs error of the ONNX outputs against TorchSharp's, over features and logits, for each batch size.</summary>
    double Compare(VisionTransformer reference, string onnxPath, params int[] batches)
    {
        using var onnx = OnnxInference.Open(onnxPath);
        Assert.Equal(reference.HasHead, onnx.HasLogits);
        double worst = 0;
        foreach (var n in batches)
        {
            using var x = Images(reference, n, seed: 10 + n);
            var (features, logits) = Reference(reference, x);
            var result = onnx.Run(x.data<float>().ToArray(), n);
            using var f = tensor(result.Features).reshape(n, result.FeatureDim);
            worst = Math.Max(worst, Fixture.MaxAbsDiff(f, features));
            if (logits is not null)
            {
                using var l = tensor(result.Logits!).reshape(n, result.NumClasses);
                worst = Math.Max(worst, Fixture.MaxAbsDiff(l, logits));
            }
            features.Dispose();
            logits?.Dispose();
        }
        output.WriteLine($"{Path.GetFileName(Path.GetDirectoryName(onnxPath))}/{Path.GetFileName(onnxPath)}: max abs error {worst:E2} (batches {string.Join(", ", batches)})");
        return worst;
    }

    [Theory]
    [InlineData("timm_hub")]       // class token, final norm, 5-class head
    [InlineData("mae_finetuned")]  // global average pool: fc_norm after the patch mean
    public void Fp32_export_matches_torchsharp_for_batch_1_and_3(string name)
    {
        var loaded = Load(name);
        var path = Path.Combine(Fixture.TempDir(), "model.onnx");
        OnnxExporter.Export(loaded.Model, path);
        Assert.True(Compare(loaded.Model, path, 1, 3) <= Fp32Tolerance);
    }

    [Fact]
    public void Lora_adapters_are_merged_into_the_export()
    {
        var model = Load("timm_hub").Model;
        new LoraSpec(LoraSpec.AllTargets, 4, 4).Inject(model);
        using (no_grad())
        {
            var gen = new Generator(7);
            foreach (var (_, _, layer) in LoraSpec.Adapters(model))
                foreach (var (pname, p) in layer.named_parameters())
                    if (pname.StartsWith("lora_B")) p.copy_(randn(p.shape, generator: gen) * 0.2);
        }
        model.eval();
        var dir = Fixture.TempDir();
        // Unmerged adapters are folded by the exporter without touching the model...
        var unmergedPath = Path.Combine(dir, "unmerged.onnx");
        OnnxExporter.Export(model, unmergedPath);
        Assert.All(LoraSpec.Adapters(model), a => Assert.False(a.Layer.Merged));
        double unmergedErr = Compare(model, unmergedPath, 1, 3);

        // ...and the PEFT-style merge_and_unload path gives the same model; both against the unmerged TorchSharp output.
        using var x = Images(model, 3, seed: 99);
        var (features, logits) = Reference(model, x);
        using var plain = Load("timm_hub").Model;
        var (baseFeatures, _) = Reference(plain, x);
        Assert.True(Fixture.MaxAbsDiff(features, baseFeatures) > 1e-2, "the adapters must change the output for this test to mean anything");
        LoraSpec.MergeAndUnload(model);
        var mergedPath = Path.Combine(dir, "model.onnx");
        OnnxExporter.Export(model, mergedPath);
        using var onnx = OnnxInference.Open(mergedPath);
        var result = onnx.Run(x.data<float>().ToArray(), 3);
        using var f = tensor(result.Features).reshape(3, result.FeatureDim);
        using var l = tensor(result.Logits!).reshape(3, result.NumClasses);
        double mergedErr = Math.Max(Fixture.MaxAbsDiff(f, features), Fixture.MaxAbsDiff(l, logits!));
        output.WriteLine($"merged LoRA: max abs error {mergedErr:E2}");
        Assert.True(unmergedErr <= Fp32Tolerance);
        Assert.True(mergedErr <= Fp32Tolerance);
    }

    [Theory]
    [InlineData("timm_hub")]
    [InlineData("mae_finetuned")]
    public void Fp16_export_keeps_float32_io_and_matches_within_a_looser_tolerance(string name)
    {
        var loaded = Load(name);
        var dir = Fixture.TempDir();
        var path32 = Path.Combine(dir, "fp32.onnx");
        var path16 = Path.Combine(dir, "fp16.onnx");
        OnnxExporter.Export(loaded.Model, path32);
        OnnxExporter.Export(loaded.Model, path16, fp16: true);
        Assert.InRange(new FileInfo(path16).Length, new FileInfo(path32).Length * 0.4, new FileInfo(path32).Length * 0.6);
        Assert.True(Compare(loaded.Model, path16, 1, 3) <= Fp16Tolerance);
    }

    [Fact]
    public void Export_folder_writes_a_config_that_reloads_the_preprocessing()
    {
        var loaded = Load("timm_hub");
        var dir = Fixture.TempDir();
        var path = OnnxExporter.ExportFolder(loaded.Model, dir, labelNames: ["a", "b", "c", "d", "e"]);
        Assert.Equal(Path.Combine(dir, "model.onnx"), path);
        var cfg = ConfigFiles.Apply(Path.Combine(dir, "config.json"), new VitConfig());
        Assert.Equal(loaded.Config.ImgSize, cfg.ImgSize);
        Assert.Equal(loaded.Config.Mean.ToArray(), cfg.Mean.ToArray());
        Assert.Equal(loaded.Config.Std.ToArray(), cfg.Std.ToArray());
        Assert.Equal(loaded.Config.CropPct, cfg.CropPct);
        Assert.Equal(["a", "b", "c", "d", "e"], LabelNames.Read(Path.Combine(dir, "config.json"), 5));
        using var onnx = OnnxInference.Open(path);
        Assert.Equal((3, 32, 48, 5), (onnx.InChans, onnx.ImgSize, onnx.FeatureDim, onnx.NumClasses));
        Assert.Throws<ArgumentException>(() => onnx.Run(new float[10], 1));
    }

    [Fact]
    public void A_model_over_the_protobuf_limit_is_refused_before_anything_is_written()
    {
        var loaded = Load("timm_hub");
        var path = Path.Combine(Fixture.TempDir(), "model.onnx");
        using var graph = OnnxExporter.Build(loaded.Model, fp16: false);
        var e = Assert.Throws<ArgumentException>(() => graph.Save(path, "vit", OnnxExporter.IrVersion, OnnxExporter.Opset, "test", maxBytes: 100_000));
        Assert.Contains("2 GiB", e.Message);
        Assert.False(File.Exists(path) || File.Exists(path + ".tmp"));
    }

    [Fact]
    public void A_file_that_is_not_onnx_gets_a_clear_error()
    {
        var path = Path.Combine(Fixture.TempDir(), "model.onnx");
        File.WriteAllText(path, "not a model");
        var e = Assert.Throws<CheckpointException>(() => OnnxInference.Open(path));
        Assert.Contains(path, e.Message);
    }
}
