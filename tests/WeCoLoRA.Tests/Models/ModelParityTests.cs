using System.Text.Json;
using WeCoLoRA.Checkpoints;
using WeCoLoRA.Data;
using WeCoLoRA.Evaluation;
using WeCoLoRA.Models;
using static TorchSharp.torch;

namespace WeCoLoRA.Tests.Models;

/// <summary>
/// Features from every published checkpoint format against PyTorch's on the same images
/// (Fixtures/models/make_models.py wrote both the checkpoints and the golden tensors).
/// </summary>
public sealed class ModelParityTests
{
    const double Tolerance = 1e-4;
    static readonly Dictionary<string, Tensor> Golden = SafeTensors.Load(Fixture.Path("models", "golden.safetensors"));
    static readonly IReadOnlyList<ImageItem> Images = ImageFolders.ListAll(Fixture.Path("models", "images"));

    [Theory]
    [InlineData("timm", "timm_hub", null, CheckpointFormat.Timm)]
    [InlineData("timm_bf16", "timm_raw_bf16.safetensors", 3, CheckpointFormat.Timm)]
    [InlineData("mae", "mae_finetuned.pth", 3, CheckpointFormat.Timm)]
    [InlineData("hf", "hf_vit", null, CheckpointFormat.HuggingFace)]
    [InlineData("torchvision", "torchvision_vit.pth", 3, CheckpointFormat.TorchVision)]
    public void Features_match_pytorch(string golden, string file, int? numHeads, CheckpointFormat format)
    {
        var loaded = ModelLoader.Load(Fixture.Path("models", file), new LoadOptions { NumHeads = numHeads });
        Assert.Equal(format, loaded.Format);
        var pre = ModelPreprocess.For(loaded.Config);
        var errors = new[] { (FeatureKind.Cls, "cls"), (FeatureKind.Avg, "avg"), (FeatureKind.Tokens, "tokens") }.Select(k =>
        {
            using var features = FeatureExtractor.Extract(loaded.Model, Images, pre, k.Item1, batchSize: 3);
            return (k.Item2, Err: Fixture.MaxAbsDiff(features, Golden[$"{golden}.{k.Item2}"]));
        }).ToList();
        Assert.True(errors.All(e => e.Err <= Tolerance), string.Join(", ", errors.Select(e => $"{golden}.{e.Item1}: max abs error {e.Err}")));
    }

    [Fact]
    public void Image_order_is_ordinal_relative_path_as_in_the_golden_file()
    {
        var paths = JsonSerializer.Deserialize<string[]>(SafeTensors.ReadMetadata(Fixture.Path("models", "golden.safetensors"))["paths"]);
        Assert.Equal(paths, Images.Select(i => i.RelativePath));
    }

    [Fact]
    public void Logits_match_pytorch_for_classifier_checkpoints()
    {
        foreach (var (golden, file) in new[] { ("timm", "timm_hub"), ("mae", "mae_finetuned.pth"), ("hf", "hf_vit"), ("torchvision", "torchvision_vit.pth") })
        {
            var loaded = ModelLoader.Load(Fixture.Path("models", file), new LoadOptions { NumHeads = 3 });
            var pre = ModelPreprocess.For(loaded.Config);
            using var loader = BatchLoader.ForPreprocess(Images, Images.Count, pre);
            using var batch = loader.GetBatches().Single();
            using var _ = inference_mode();
            using var logits = loaded.Model.call(batch.Images);
            double err = Fixture.MaxAbsDiff(logits, Golden[$"{golden}.logits"]);
            Assert.True(err <= Tolerance, $"{golden}.logits: max abs error {err}");
        }
    }

    [Fact]
    public void Config_comes_from_each_ecosystems_files()
    {
        var timm = ModelLoader.Load(Fixture.Path("models", "timm_hub")).Config;
        Assert.Equal((32, 8, 48, 3, 3, 5, 0.875, "bicubic"), (timm.ImgSize, timm.PatchSize, timm.EmbedDim, timm.Depth, timm.NumHeads, timm.NumClasses, timm.CropPct, timm.Interpolation));
        Assert.Equal([0.5f, 0.5f, 0.5f], timm.Mean.ToArray());

        var hf = ModelLoader.Load(Fixture.Path("models", "hf_vit")).Config;
        Assert.Equal((3, 5, 1e-12, 1.0), (hf.NumHeads, hf.NumClasses, hf.LayerNormEps, hf.CropPct));

        var mae = ModelLoader.Load(Fixture.Path("models", "mae_finetuned.pth"), new LoadOptions { NumHeads = 3 }).Config;
        Assert.Equal(GlobalPool.Avg, mae.GlobalPool);
        Assert.Equal(VitConfig.ImageNetMean.ToArray(), mae.Mean.ToArray());

        var tv = ModelLoader.Load(Fixture.Path("models", "torchvision_vit.pth"), new LoadOptions { NumHeads = 3 }).Config;
        Assert.Equal((0.875, "bilinear"), (tv.CropPct, tv.Interpolation));
    }

    [Fact]
    public void A_raw_state_dict_without_config_says_num_heads_was_assumed()
    {
        var loaded = ModelLoader.Load(Fixture.Path("models", "timm_raw_bf16.safetensors"));
        Assert.Contains(loaded.Notes, n => n.Contains("num_heads") && n.Contains("--num-heads"));
    }

    [Fact]
    public void Position_embedding_is_resampled_like_timm()
    {
        var loaded = ModelLoader.Load(Fixture.Path("models", "timm_hub"), new LoadOptions { ImgSize = 48 });
        Assert.Equal(48, loaded.Config.ImgSize);
        double err = Fixture.MaxAbsDiff(loaded.Model.pos_embed, Golden["timm.pos_embed_48"]);
        Assert.True(err <= 1e-5, $"pos_embed max abs error {err}");
        Assert.Contains(loaded.Notes, n => n.Contains("resampled"));
    }
}
