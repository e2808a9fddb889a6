using WeCoLoRA.Visualization;
using static TorchSharp.torch;

namespace WeCoLoRA.Tests.Visualization;

public sealed class TsneTests
{
    /// <summary>Three Gaussian clusters in 10-D, 40 points each, centres 8σ apart; labels 0, 1, 2.</summary>
    static (Tensor X, int[] Labels) Clusters(long seed = 3)
    {
        var g = new Generator((ulong)seed);
        var centres = randn(3, 10, generator: g) * 8;
        var labels = Enumerable.Range(0, 120).Select(i => i % 3).ToArray();
        var x = centres.index_select(0, tensor(labels.Select(l => (long)l).ToArray())) + randn(120, 10, generator: g);
        return (x, labels);
    }

    /// <summary>Leave-one-out 5-NN accuracy in the embedding.</summary>
    static double KnnAccuracy(Tensor y, int[] labels)
    {
        using var d = cdist(y, y);
        d.diagonal().fill_(double.PositiveInfinity);
        var (_, idx) = d.topk(5, largest: false);
        var nn = idx.data<long>().ToArray();
        int correct = 0;
        for (int i = 0; i < labels.Length; i++)
        {
            int vote = nn.Skip(i * 5).Take(5).GroupBy(j => labels[j]).OrderByDescending(gr => gr.Count()).First().Key;
            if (vote == labels[i]) correct++;
        }
        return correct / (double)labels.Length;
    }

    [Fact]
    public void Separates_three_clusters_and_the_kl_decreases()
    {
        var (x, labels) = Clusters();
        var result = Tsne.Fit(x, new TsneOptions { Perplexity = 20 });
        Assert.Equal(new long[] { 120, 2 }, result.Embedding.shape);
        Assert.True(KnnAccuracy(result.Embedding, labels) >= 0.95);
        // After the exaggerated phase the KL (plain P) only goes down, give or take float noise.
        var plain = result.KlHistory.Where(h => h.Iteration > 250).Select(h => h.Kl).ToList();
        Assert.True(plain.Count >= 2);
        Assert.True(plain[^1] < plain[0], $"KL {plain[0]} -> {plain[^1]}");
        Assert.All(plain.Zip(plain.Skip(1)), pair => Assert.True(pair.Second <= pair.First + 1e-3, $"{pair.First} -> {pair.Second}"));
        Assert.True(result.Kl > 0 && result.Kl <= plain[0]);
    }

    [Fact]
    public void Same_seed_same_embedding()
    {
        var (x, _) = Clusters();
        var options = new TsneOptions { Perplexity = 10, Iterations = 300, Init = TsneInit.Random, Seed = 5 };
        using var a = Tsne.Fit(x, options).Embedding;
        using var b = Tsne.Fit(x, options).Embedding;
        using var c = Tsne.Fit(x, options with { Seed = 6 }).Embedding;
        Assert.Equal(0, Fixture.MaxAbsDiff(a, b));
        Assert.True(Fixture.MaxAbsDiff(a, c) > 1e-3);
        using var pa = Tsne.Fit(x, options with { Init = TsneInit.Pca, Iterations = 100 }).Embedding;
        using var pb = Tsne.Fit(x, options with { Init = TsneInit.Pca, Iterations = 100 }).Embedding;
        Assert.Equal(0, Fixture.MaxAbsDiff(pa, pb));
    }

    [Theory]
    [InlineData(5.0)]
    [InlineData(30.0)]
    public void Each_conditional_row_has_the_entropy_of_the_perplexity(double perplexity)
    {
        var g = new Generator(11);
        using var x = randn(200, 6, generator: g) * 3;
        using var d = Tsne.SquaredDistances(x);
        using var p = Tsne.ConditionalProbabilities(d, perplexity);
        Assert.Equal(0, p.diagonal().abs().max().item<double>());
        Assert.True((p.sum(1) - 1).abs().max().item<double>() < 1e-12);
        using var entropy = -(p * p.clamp_min(1e-300).log()).sum(1);
        Assert.True((entropy - Math.Log(perplexity)).abs().max().item<double>() <= 1e-3);

        using var joint = Tsne.JointProbabilities(x, perplexity);
        Assert.Equal(1.0, joint.to(float64).sum().item<double>(), 5);
        Assert.Equal(0, Fixture.MaxAbsDiff(joint, joint.t()));
    }

    [Fact]
    public void Bad_settings_are_refused()
    {
        using var x = randn(10, 3);
        Assert.Throws<ArgumentException>(() => Tsne.Fit(x, new TsneOptions { Perplexity = 10 }));
        Assert.Throws<ArgumentException>(() => Tsne.Fit(x, new TsneOptions { Perplexity = 0 }));
        Assert.Throws<ArgumentException>(() => Tsne.Fit(randn(10), new TsneOptions { Perplexity = 3 }));
    }
}
