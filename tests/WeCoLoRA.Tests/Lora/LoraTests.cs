using TorchSharp;
using WeCoLoRA.Lora;
using WeCoLoRA.Models;
using static TorchSharp.torch;

namespace WeCoLoRA.Tests.Lora;

public sealed class LoraTests
{
    static VitConfig Tiny => new() { ImgSize = 32, PatchSize = 8, EmbedDim = 48, Depth = 2, NumHeads = 3, NumClasses = 5 };

    static void RandomizeB(VisionTransformer model, int seed)
    {
        using var _ = no_grad();
        var g = new Generator((ulong)seed);
        foreach (var (name, p) in model.named_parameters())
            if (name.Contains("lora_B")) p.normal_(0, 0.05, g);
    }

    [Fact]
    public void A_fresh_adapter_leaves_the_output_unchanged()
    {
        manual_seed(1);
        var model = new VisionTransformer(Tiny);
        using var x = randn(2, 3, 32, 32);
        using var before = model.call(x);
        new LoraSpec(LoraSpec.AllTargets, 4, 4).Inject(model);
        using var after = model.call(x);
        Assert.Equal(0, Fixture.MaxAbsDiff(before, after));
    }

    [Theory]
    [InlineData("enhanced", 8.0)]
    [InlineData("qv", 4.0)]
    [InlineData("k,fc2", 2.0)]
    public void Merged_weights_give_the_unmerged_output(string targets, double alpha)
    {
        manual_seed(2);
        var model = new VisionTransformer(Tiny);
        new LoraSpec(LoraSpec.ParseTargets(targets), 4, alpha).Inject(model);
        RandomizeB(model, 3);
        using var x = randn(2, 3, 32, 32);
        using var unmerged = model.call(x);
        LoraSpec.MergeAndUnload(model);
        Assert.Empty(LoraSpec.Adapters(model));
        Assert.DoesNotContain(model.state_dict().Keys, k => k.Contains("lora_") || k.Contains("base_layer"));
        using var merged = model.call(x);
        Assert.True(Fixture.MaxAbsDiff(unmerged, merged) <= 1e-5);
    }

    [Fact]
    public void Unmerge_restores_the_base_weight_and_delta_is_scaled_BA_per_part()
    {
        manual_seed(4);
        var model = new VisionTransformer(Tiny);
        new LoraSpec(["q", "v"], 4, 8).Inject(model);
        RandomizeB(model, 5);
        var layer = LoraSpec.Adapters(model).First(a => a.Name == "qkv").Layer;
        using var w0 = layer.base_layer.weight!.detach().clone();
        using var delta = layer.DeltaWeight();
        Assert.Equal(new long[] { 144, 48 }, delta.shape);
        // k's third is untouched; q's third is 2·B_q·A_q (alpha / rank = 2).
        Assert.Equal(0, delta[48..96].abs().max().item<float>());
        var named = layer.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter);
        using var q = matmul(named["lora_B.q.weight"], named["lora_A.q.weight"]) * 2;
        Assert.True(Fixture.MaxAbsDiff(delta[..48], q) <= 1e-6);
        layer.Merge();
        layer.Unmerge();
        Assert.True(Fixture.MaxAbsDiff(layer.base_layer.weight!, w0) <= 1e-6);
    }

    [Fact]
    public void Only_adapters_are_trainable_and_named_like_peft()
    {
        var model = new VisionTransformer(Tiny);
        new LoraSpec(LoraSpec.AllTargets, 4, 4).Inject(model);
        var trainable = model.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).ToList();
        Assert.All(trainable, n => Assert.Matches(@"\.lora_[AB]\.", n));
        // 2 blocks × (q, k, v, proj, fc1, fc2) × (A, B)
        Assert.Equal(24, trainable.Count);
        Assert.Contains("blocks.0.attn.qkv.lora_A.q.weight", trainable);
        Assert.Contains("blocks.1.mlp.fc2.lora_B.weight", trainable);
        Assert.Contains("blocks.0.attn.qkv.base_layer.weight", model.state_dict().Keys);
    }

    [Fact]
    public void Gradients_reach_adapters_only()
    {
        var model = new VisionTransformer(Tiny);
        new LoraSpec(LoraSpec.AllTargets, 4, 4).Inject(model);
        RandomizeB(model, 6);
        using var x = randn(2, 3, 32, 32);
        model.call(x).sum().backward();
        foreach (var (name, p) in model.named_parameters())
            Assert.True(name.Contains("lora_") == (p.grad is not null), name);
    }

    [Fact]
    public void Bad_targets_and_ranks_are_refused_with_the_value()
    {
        var e = Assert.Throws<ArgumentException>(() => LoraSpec.ParseTargets("q,fc3"));
        Assert.Contains("fc3", e.Message);
        var model = new VisionTransformer(Tiny);
        e = Assert.Throws<ArgumentException>(() => new LoraSpec(["proj"], 49, 49).Inject(model));
        Assert.Contains("rank 49", e.Message);
    }
}
