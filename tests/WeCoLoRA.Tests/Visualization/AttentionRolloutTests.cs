using WeCoLoRA.Checkpoints;
using WeCoLoRA.Lora;
using WeCoLoRA.Visualization;
using static TorchSharp.torch;

namespace WeCoLoRA.Tests.Visualization;

/// <summary>Attention capture and rollout against Fixtures/viz/make_rollout_golden.py (PyTorch on the same weights and input).</summary>
public sealed class AttentionRolloutTests
{
    static Dictionary<string, Tensor> Golden() => SafeTensors.Load(Fixture.Path("viz", "rollout_golden.safetensors"));

    static LoadedModel Tiny() => ModelLoader.Load(Fixture.Path("models", "timm_hub"));

    [Fact]
    public void Captured_attention_matches_pytorch()
    {
        var golden = Golden();
        var model = Tiny().Model;
        List<Tensor> attn;
        using (inference_mode()) attn = model.ForwardAttention(golden["input"]);
        Assert.Equal(3, attn.Count);
        for (int i = 0; i < attn.Count; i++)
        {
            Assert.Equal(new long[] { 2, 3, 17, 17 }, attn[i].shape);
            Assert.True(Fixture.MaxAbsDiff(attn[i], golden[$"attn.{i}"]) <= 1e-5, $"block {i}");
        }
    }

    [Theory]
    [InlineData(HeadFusion.Mean, "mean", 0.9)]
    [InlineData(HeadFusion.Max, "max", 0.9)]
    [InlineData(HeadFusion.Min, "min", 0.9)]
    [InlineData(HeadFusion.Mean, "mean", 0.0)]
    [InlineData(HeadFusion.Max, "max", 0.0)]
    [InlineData(HeadFusion.Min, "min", 0.0)]
    public void Rollout_matches_the_python_golden(HeadFusion fusion, string name, double ratio)
    {
        var golden = Golden();
        var expected = golden[$"rollout.{name}.{ratio:0.0}"];
        // The algorithm alone, on PyTorch's probabilities ...
        using var fromTorch = AttentionRollout.Compute([golden["attn.0"], golden["attn.1"], golden["attn.2"]], fusion, ratio);
        Assert.True(Fixture.MaxAbsDiff(fromTorch, expected) <= 1e-6);
        // ... and end to end through our model.
        using var ours = AttentionRollout.ForImages(Tiny().Model, golden["input"], fusion, ratio);
        Assert.Equal(new long[] { 2, 4, 4 }, ours.shape);
        Assert.True(Fixture.MaxAbsDiff(ours, expected) <= 1e-5);
        Assert.Equal(1f, ours.amax([1, 2])[0].item<float>(), 6);
        Assert.True(ours.min().item<float>() >= 0);
    }

    [Fact]
    public void Capture_leaves_the_forward_output_unchanged_and_is_off_afterwards()
    {
        var model = Tiny().Model;
        using var x = Golden()["input"];
        using var _ = inference_mode();
        using var plain = model.call(x);
        var attn = model.ForwardAttention(x);
        foreach (var t in attn) t.Dispose();
        Assert.All(model.blocks, b => Assert.Null(b.attn.AttentionCapture));
        var captured = new List<Tensor>();
        foreach (var b in model.blocks) b.attn.AttentionCapture = captured;
        using var withCapture = model.call(x);
        foreach (var b in model.blocks) b.attn.AttentionCapture = null;
        Assert.Equal(3, captured.Count);
        Assert.Equal(0, Fixture.MaxAbsDiff(withCapture, plain));
    }

    [Fact]
    public void Capture_goes_through_lora_adapted_qkv()
    {
        using var x = Golden()["input"];
        var baseModel = Tiny().Model;
        var adapted = Tiny().Model;
        new LoraSpec(["q", "k"], 4, 8).Inject(adapted);
        manual_seed(7);
        using (no_grad())
            foreach (var (name, p) in adapted.named_parameters().Where(p => p.name.Contains("lora_B")))
                p.copy_(randn_like(p) * 0.5);
        using var _ = inference_mode();
        var before = baseModel.ForwardAttention(x);
        var withAdapters = adapted.ForwardAttention(x);
        LoraSpec.MergeAndUnload(adapted);
        var merged = adapted.ForwardAttention(x);
        for (int i = 0; i < 3; i++)
        {
            Assert.True(Fixture.MaxAbsDiff(withAdapters[i], before[i]) > 1e-3, $"block {i}: adapters did not change attention");
            Assert.True(Fixture.MaxAbsDiff(withAdapters[i], merged[i]) <= 1e-5, $"block {i}");
        }
    }

    [Fact]
    public void Bad_arguments_are_refused()
    {
        var golden = Golden();
        Assert.Throws<ArgumentException>(() => AttentionRollout.Compute([golden["attn.0"]], HeadFusion.Mean, 1.0));
        Assert.Throws<ArgumentException>(() => AttentionRollout.Compute([]));
        Assert.Throws<ArgumentException>(() => AttentionRollout.Compute([golden["attn.0"][.., .., 1.., 1..]]));
    }
}
