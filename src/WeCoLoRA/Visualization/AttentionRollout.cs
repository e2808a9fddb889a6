using WeCoLoRA.Models;
using static TorchSharp.torch;

namespace WeCoLoRA.Visualization;

/// <summary>How one block's attention heads become one matrix before rollout.</summary>
public enum HeadFusion { Mean, Max, Min }

/// <summary>
/// Attention rollout (Abnar &amp; Zuidema 2020) with jacobgil/vit-explain's head fusion and discarding. Per block: fuse the
/// heads, zero the ⌊N²·discardRatio⌋ smallest entries of each sample's flattened N×N matrix except entry 0 (class → class),
/// average with the identity (residual), renormalize rows, and multiply onto the product of the earlier blocks. The map is
/// the class token's row over the patch tokens on the patch grid, divided by its maximum so it lies in [0, 1].
/// Unlike vit-explain's code, the discard applies to every sample of a batch and rows are renormalized row by row.
/// </summary>
public static class AttentionRollout
{
    /// <summary>Rollout maps [B, grid, grid] (float32, in [0, 1]) from each block's attention probabilities [B, heads, N, N].</summary>
    public static Tensor Compute(IReadOnlyList<Tensor> attentions, HeadFusion fusion = HeadFusion.Mean, double discardRatio = 0.9)
    {
        if (attentions.Count == 0) throw new ArgumentException("attention rollout needs at least one block's attention");
        if (discardRatio is < 0 or >= 1 || double.IsNaN(discardRatio))
            throw new ArgumentException($"discard ratio {discardRatio} must be in [0, 1)");
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var first = attentions[0];
        if (first.dim() != 4 || first.shape[2] != first.shape[3])
            throw new ArgumentException($"attention must be [B, heads, N, N]; got [{string.Join(", ", first.shape)}]");
        long b = first.shape[0], n = first.shape[2];
        long grid = (long)Math.Round(Math.Sqrt(n - 1));
        if (grid * grid != n - 1) throw new ArgumentException($"{n} tokens are not a class token plus a square patch grid");
        int discard = (int)(n * n * discardRatio);
        var eye = TorchSharp.torch.eye(n, dtype: float64);
        var result = eye.expand(b, n, n);
        foreach (var attention in attentions)
        {
            if (!attention.shape.SequenceEqual(first.shape))
                throw new ArgumentException($"attention shapes differ: [{string.Join(", ", first.shape)}] and [{string.Join(", ", attention.shape)}]");
            var a = attention.to(float64).cpu();
            var fused = fusion switch
            {
                HeadFusion.Max => a.amax([1]),
                HeadFusion.Min => a.amin([1]),
                _ => a.mean([1]),
            };
            var flat = fused.reshape(b, n * n);
            if (discard > 0)
            {
                var (_, indices) = flat.topk(discard, dim: -1, largest: false);
                var drop = zeros(b, n * n, dtype: @bool).scatter_(1, indices, ones_like(indices, dtype: @bool));
                drop[.., 0] = false; // the class token's attention to itself is never discarded
                flat = flat.masked_fill(drop, 0.0);
            }
            var withResidual = (flat.reshape(b, n, n) + eye) / 2.0;
            withResidual /= withResidual.sum(-1, keepdim: true);
            result = withResidual.matmul(result);
        }
        var map = result[.., 0, 1..];
        map /= map.amax([-1], keepdim: true);
        return map.reshape(b, grid, grid).to(float32).MoveToOuterDisposeScope();
    }

    /// <summary>Rollout maps [B, grid, grid] for a batch of preprocessed images [B, C, H, W].</summary>
    public static Tensor ForImages(VisionTransformer model, Tensor images, HeadFusion fusion = HeadFusion.Mean, double discardRatio = 0.9)
    {
        model.eval();
        List<Tensor> attentions;
        using (inference_mode()) attentions = model.ForwardAttention(images);
        try
        {
            return Compute(attentions, fusion, discardRatio);
        }
        finally
        {
            foreach (var t in attentions) t.Dispose();
        }
    }

    /// <summary>A [grid, grid] map resized bilinearly (align_corners = false) to [height, width].</summary>
    public static Tensor Upsample(Tensor map, int height, int width)
    {
        using var scope = NewDisposeScope();
        var x = map.to(float32).reshape(1, 1, map.shape[^2], map.shape[^1]);
        var up = nn.functional.interpolate(x, [height, width], mode: InterpolationMode.Bilinear, align_corners: false);
        return up.reshape(height, width).clamp(0, 1).MoveToOuterDisposeScope();
    }
}
