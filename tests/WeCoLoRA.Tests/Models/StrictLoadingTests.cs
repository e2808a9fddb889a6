using WeCoLoRA.Checkpoints;
using WeCoLoRA.Models;
using static TorchSharp.torch;

namespace WeCoLoRA.Tests.Models;

public sealed class StrictLoadingTests
{
    static VitConfig Tiny => new() { ImgSize = 32, PatchSize = 8, EmbedDim = 48, Depth = 2, NumHeads = 3, NumClasses = 5 };

    static Dictionary<string, Tensor> StateOf(VisionTransformer m) =>
        m.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());

    [Fact]
    public void Missing_unexpected_and_misshapen_keys_are_all_named_in_one_error()
    {
        var sd = StateOf(new VisionTransformer(Tiny));
        sd.Remove("blocks.1.mlp.fc2.bias");
        sd["blocks.0.extra.weight"] = zeros(2);
        sd["head.weight"] = zeros(7, 48);
        var e = Assert.Throws<CheckpointException>(() => ModelLoader.LoadStrict(new VisionTransformer(Tiny), sd, "ckpt.safetensors"));
        Assert.Contains("ckpt.safetensors", e.Message);
        Assert.Contains("missing blocks.1.mlp.fc2.bias", e.Message);
        Assert.Contains("unexpected blocks.0.extra.weight", e.Message);
        Assert.Contains("head.weight (checkpoint [7,48], model [5,48])", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Loading_copies_every_value()
    {
        var source = new VisionTransformer(Tiny);
        var target = new VisionTransformer(Tiny);
        ModelLoader.LoadStrict(target, StateOf(source), "mem");
        foreach (var (k, v) in source.state_dict())
            Assert.True(v.allclose(target.state_dict()[k], rtol: 0, atol: 0), k);
    }

    [Fact]
    public void A_preset_that_does_not_fit_the_weights_is_refused_naming_the_keys()
    {
        var e = Assert.Throws<CheckpointException>(() =>
            ModelLoader.Load(Fixture.Path("models", "timm_hub", "model.safetensors"), new LoadOptions { Arch = "vit_tiny_patch16_224" }));
        Assert.Contains("model.safetensors", e.Message);
        Assert.Contains("shape mismatch", e.Message);
    }

    [Fact]
    public void A_missing_model_path_names_the_path_and_what_is_expected()
    {
        var e = Assert.Throws<CheckpointException>(() => ModelLoader.Load("/nonexistent/vit.pth"));
        Assert.Contains("/nonexistent/vit.pth", e.Message);
        var dir = Fixture.TempDir();
        e = Assert.Throws<CheckpointException>(() => ModelLoader.Load(dir));
        Assert.Contains("model.safetensors", e.Message);
    }

    [Fact]
    public void Image_size_not_a_multiple_of_the_patch_is_refused()
    {
        var e = Assert.Throws<CheckpointException>(() => ModelLoader.Load(Fixture.Path("models", "timm_hub"), new LoadOptions { ImgSize = 30 }));
        Assert.Contains("img_size 30", e.Message);
    }

    [Fact]
    public void Global_pool_models_have_fc_norm_and_no_final_norm_like_timm()
    {
        var names = new VisionTransformer(Tiny with { GlobalPool = GlobalPool.Avg, NumClasses = 0 }).state_dict().Keys.ToList();
        Assert.Contains("fc_norm.weight", names);
        Assert.DoesNotContain("norm.weight", names);
        Assert.DoesNotContain("head.weight", names);
        Assert.Contains("blocks.1.attn.qkv.weight", names);
    }
}
