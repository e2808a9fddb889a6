using TorchSharp;
using WeCoLoRA.Models;
using static TorchSharp.torch;

namespace WeCoLoRA.Tests.Models;

public sealed class AttentionTests
{
    /// <summary>On CPU the block computes attention explicitly (faster there); it must equal the fused kernel CUDA uses.</summary>
    [Theory]
    [InlineData(ScalarType.Float32, 1e-5)]
    [InlineData(ScalarType.BFloat16, 2e-2)]
    public void Explicit_cpu_attention_equals_scaled_dot_product_attention(ScalarType dtype, double tolerance)
    {
        manual_seed(3);
        using var attn = new Attention(dim: 64, numHeads: 4, qkvBias: true);
        attn.to(dtype);
        using var x = randn(2, 17, 64).to(dtype);
        using var _ = no_grad();
        using var actual = attn.call(x);
        var qkv = ((TorchSharp.Modules.Linear)attn.qkv).call(x).reshape(2, 17, 3, 4, 16).permute(2, 0, 3, 1, 4).unbind(0);
        var fused = nn.functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2]).transpose(1, 2).reshape(2, 17, 64);
        using var expected = attn.proj.call(fused);
        Assert.True(Fixture.MaxAbsDiff(actual.to(float32), expected.to(float32)) <= tolerance);
    }
}
