using static TorchSharp.torch;

namespace WeCoLoRA.Evaluation;

/// <summary>kNN results: accuracies in percent; <see cref="Predictions"/> are the top-1 classes.</summary>
public sealed record KnnResult(double Top1, double Top5, int K, int[] Predictions);

/// <summary>
/// DINO's weighted k-NN classifier (eval_knn.py knn_classifier): features are L2-normalised, the k most cosine-similar
/// training samples vote for their class with weight exp(similarity / T), and classes are ranked by their summed votes.
/// </summary>
public static class Knn
{
    public static KnnResult Classify(Tensor trainFeatures, IReadOnlyList<int> trainLabels, Tensor testFeatures, IReadOnlyList<int> testLabels,
        int classes, int k = 20, double temperature = 0.07, int chunk = 256)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(k);
        if (trainFeatures.shape[0] != trainLabels.Count || testFeatures.shape[0] != testLabels.Count)
            throw new ArgumentException("kNN: feature rows and labels differ in number.");
        if (trainLabels.Count == 0) throw new ArgumentException("kNN needs at least one training sample.");
        foreach (var l in trainLabels.Concat(testLabels))
            if ((uint)l >= (uint)classes) throw new ArgumentException($"label {l} is outside [0, {classes}).");
        k = Math.Min(k, trainLabels.Count);
        int top = Math.Min(5, classes), n = testLabels.Count, correct1 = 0, correct5 = 0;
        var predictions = new int[n];
        using var _ = no_grad();
        using var train = nn.functional.normalize(trainFeatures.to(float32), p: 2, dim: 1);
        using var trainT = train.t();
        using var labels = tensor(trainLabels.Select(l => (long)l).ToArray());
        for (int start = 0; start < n; start += chunk)
        {
            using var scope = NewDisposeScope();
            int b = Math.Min(chunk, n - start);
            var test = nn.functional.normalize(testFeatures.narrow(0, start, b).to(float32), p: 2, dim: 1);
            var (sims, idx) = test.matmul(trainT).topk(k, dim: 1, largest: true, sorted: true);
            var neighbours = labels.index_select(0, idx.reshape(-1)).reshape(b, k);
            var votes = zeros(b, classes).scatter_add_(1, neighbours, sims.div(temperature).exp_());
            var ranked = votes.topk(top, dim: 1).indexes.data<long>().ToArray();
            for (int i = 0; i < b; i++)
            {
                int truth = testLabels[start + i];
                predictions[start + i] = (int)ranked[i * top];
                if (ranked[i * top] == truth) correct1++;
                for (int j = 0; j < top; j++)
                    if (ranked[i * top + j] == truth) { correct5++; break; }
            }
        }
        return new KnnResult(n == 0 ? 0 : 100.0 * correct1 / n, n == 0 ? 0 : 100.0 * correct5 / n, k, predictions);
    }
}
