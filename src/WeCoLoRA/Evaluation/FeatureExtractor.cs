using WeCoLoRA.Data;
using WeCoLoRA.Models;
using static TorchSharp.torch;

namespace WeCoLoRA.Evaluation;

/// <summary>What a row of features is: the pooled vector (class token / patch mean) or all last-block tokens.</summary>
public enum FeatureKind { Cls, Avg, Tokens }

public static class FeatureExtractor
{
    /// <summary>
    /// Features of every item in order: [N, D] for <see cref="FeatureKind.Cls"/> / <see cref="FeatureKind.Avg"/>,
    /// [N, 1+P, D] for <see cref="FeatureKind.Tokens"/> (last block, before the final norm). Float32 on the CPU.
    /// </summary>
    public static Tensor Extract(VisionTransformer model, IReadOnlyList<ImageItem> items, Preprocess preprocess, FeatureKind kind,
        int batchSize = 64, IProgress<int>? progress = null, CancellationToken ct = default)
    {
        var cfg = model.Config;
        long[] rowShape = kind == FeatureKind.Tokens ? [cfg.NumPatches + 1, cfg.EmbedDim] : [cfg.EmbedDim];
        var result = empty([items.Count, .. rowShape], float32);
        model.eval();
        using var loader = BatchLoader.ForPreprocess(items, batchSize, preprocess);
        int done = 0;
        using (inference_mode())
        {
            foreach (var batch in loader.GetBatches(ct))
            {
                using var _ = batch;
                using var scope = NewDisposeScope();
                var tokens = model.ForwardTokens(batch.Images);
                var rows = kind switch
                {
                    FeatureKind.Tokens => tokens,
                    FeatureKind.Cls => model.Pool(tokens, GlobalPool.Token),
                    _ => model.Pool(tokens, GlobalPool.Avg),
                };
                // Batches arrive in order, so rows land at consecutive positions.
                int n = (int)rows.shape[0];
                result.narrow(0, done, n).copy_(rows);
                done += n;
                progress?.Report(done);
            }
        }
        return result;
    }
}
