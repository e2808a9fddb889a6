namespace WeCoLoRA.Evaluation;

/// <summary>Classification accuracy, per-class accuracy, confusion matrix and AUROC.</summary>
public static class Metrics
{
    /// <summary>
    /// Area under the ROC curve as the Mann-Whitney statistic: the probability that a random positive scores above a random
    /// negative, ties counting one half (ranks averaged over ties). Null when there are no positives or no negatives.
    /// </summary>
    public static double? Auroc(IReadOnlyList<double> scores, IReadOnlyList<bool> positive)
    {
        if (scores.Count != positive.Count)
            throw new ArgumentException($"{scores.Count} scores but {positive.Count} labels.");
        int n = scores.Count;
        long pos = positive.Count(p => p), neg = n - pos;
        if (pos == 0 || neg == 0) return null;
        var order = Enumerable.Range(0, n).ToArray();
        Array.Sort(order, (a, b) => scores[a].CompareTo(scores[b]));
        double rankSum = 0;
        for (int i = 0; i < n;)
        {
            int j = i;
            while (j + 1 < n && scores[order[j + 1]] == scores[order[i]]) j++;
            double rank = (i + j) / 2.0 + 1; // average 1-based rank of the tie group
            for (int t = i; t <= j; t++)
                if (positive[order[t]]) rankSum += rank;
            i = j + 1;
        }
        return (rankSum - pos * (pos + 1) / 2.0) / ((double)pos * neg);
    }

    /// <summary>Confusion counts [true class][predicted class].</summary>
    public static long[][] Confusion(IReadOnlyList<int> truth, IReadOnlyList<int> predicted, int classes)
    {
        var m = new long[classes][];
        for (int c = 0; c < classes; c++) m[c] = new long[classes];
        for (int i = 0; i < truth.Count; i++) m[truth[i]][predicted[i]]++;
        return m;
    }

    /// <summary>Accuracy (percent) of each class from a confusion matrix; null for a class with no samples.</summary>
    public static double?[] PerClassAccuracy(long[][] confusion) =>
        [.. confusion.Select((row, c) => row.Sum() is var n && n > 0 ? 100.0 * row[c] / n : (double?)null)];
}
