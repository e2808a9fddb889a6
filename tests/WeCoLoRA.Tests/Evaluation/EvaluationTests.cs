using WeCoLoRA.Optimization;
using System.Text.Json;
using WeCoLoRA.Data;
using WeCoLoRA.Evaluation;
using WeCoLoRA.Models;
using static TorchSharp.torch;

namespace WeCoLoRA.Tests.Evaluation;

public sealed class LarsAndScheduleTests
{
    [Fact]
    public void Lars_matches_maes_lars_py_over_three_steps()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixture.Path("eval", "lars_golden.json")));
        var root = doc.RootElement;
        static float[] F(JsonElement e) => [.. e.EnumerateArray().Select(v => v.GetSingle())];
        var shapes = root.GetProperty("shapes").EnumerateArray().Select(s => s.EnumerateArray().Select(v => v.GetInt64()).ToArray()).ToArray();
        var initial = root.GetProperty("initial").EnumerateArray().ToArray();
        var ps = shapes.Select((s, i) => tensor(F(initial[i])).reshape(s).requires_grad_()).ToArray();
        using var lars = new Lars(ps, root.GetProperty("momentum").GetDouble(), root.GetProperty("trust").GetDouble(), root.GetProperty("weight_decay").GetDouble());
        foreach (var step in root.GetProperty("steps").EnumerateArray())
        {
            var grads = step.GetProperty("grads").EnumerateArray().ToArray();
            lars.ZeroGrad();
            for (int i = 0; i < ps.Length; i++)
            {
                using var g = tensor(F(grads[i])).reshape(shapes[i]);
                using var loss = (ps[i] * g).sum();
                loss.backward(); // d loss / d p = g
            }
            lars.Step(step.GetProperty("lr").GetDouble());
            var after = step.GetProperty("after").EnumerateArray().ToArray();
            for (int i = 0; i < ps.Length; i++)
            {
                var expected = F(after[i]);
                var actual = ps[i].detach().reshape(-1).data<float>().ToArray();
                for (int j = 0; j < expected.Length; j++)
                    Assert.True(Math.Abs(expected[j] - actual[j]) <= 1e-6 * Math.Max(1, Math.Abs(expected[j])), $"param {i}[{j}]: {actual[j]} vs {expected[j]}");
            }
        }
    }

    [Fact]
    public void Lr_schedule_warms_up_linearly_then_follows_a_half_cosine()
    {
        Assert.Equal(0, LrSchedule.At(0, 0.2, 10, 50));
        Assert.Equal(0.1, LrSchedule.At(5, 0.2, 10, 50), 12);
        Assert.Equal(0.2, LrSchedule.At(10, 0.2, 10, 50), 12);
        Assert.Equal(0.1 * (1 + Math.Cos(Math.PI / 4)), LrSchedule.At(20, 0.2, 10, 50), 12);
        Assert.Equal(0.1, LrSchedule.At(30, 0.2, 10, 50), 12);
        Assert.Equal(0.0, LrSchedule.At(50, 0.2, 10, 50), 12);
        Assert.Equal(0.01 + 0.19 * 0.5, LrSchedule.At(30, 0.2, 10, 50, minLr: 0.01), 12);
        Assert.Equal(0.2 * 2.5 / 10, LrSchedule.At(2.5, 0.2, 10, 50), 12); // per iteration: fractional epochs
    }
}

public sealed class MetricsTests
{
    [Fact]
    public void Auroc_is_the_mann_whitney_statistic_with_ties_counting_half()
    {
        // positives 0.35, 0.8, 0.4 vs negatives 0.1, 0.4: wins 1 + 2 + 1, one tie (0.4 = 0.4) → 4.5 / 6.
        Assert.Equal(0.75, Metrics.Auroc([0.1, 0.4, 0.35, 0.8, 0.4], [false, false, true, true, true])!.Value, 12);
        Assert.Equal(1.0, Metrics.Auroc([0.1, 0.2, 0.9], [false, false, true])!.Value, 12);
        Assert.Equal(0.5, Metrics.Auroc([0.3, 0.3, 0.3, 0.3], [false, true, false, true])!.Value, 12);
        Assert.Null(Metrics.Auroc([0.1, 0.2], [true, true]));
    }

    [Fact]
    public void Confusion_rows_are_true_classes()
    {
        var m = Metrics.Confusion([0, 0, 1, 2], [0, 1, 1, 1], 3);
        Assert.Equal([1L, 1, 0], m[0]);
        Assert.Equal([0L, 0, 0], m[1].Select((v, i) => i == 1 ? v - 1 : v));
        Assert.Equal([50.0, 100.0, 0.0], Metrics.PerClassAccuracy(m).Select(v => v!.Value));
        Assert.Null(Metrics.PerClassAccuracy(Metrics.Confusion([0], [0], 2))[1]);
    }
}

public sealed class ProbeAndKnnTests
{
    /// <summary>n samples per class of 8-D features: a class-specific one-hot direction ×3 plus unit noise.</summary>
    static (Tensor X, int[] Y) Separable(int classes, int perClass, int seed)
    {
        var rng = new Random(seed);
        int d = 8, n = classes * perClass;
        var x = new float[n * d];
        var y = new int[n];
        for (int i = 0; i < n; i++)
        {
            y[i] = i % classes;
            for (int j = 0; j < d; j++) x[i * d + j] = (float)(rng.NextDouble() - 0.5) + (j == y[i] ? 3f : 0f) + 1f;
        }
        return (tensor(x).reshape(n, d), y);
    }

    [Fact]
    public void Knn_on_a_separable_set_is_perfect()
    {
        var (trainX, trainY) = Separable(6, 20, 1);
        var (testX, testY) = Separable(6, 10, 2);
        var r = Knn.Classify(trainX, trainY, testX, testY, 6);
        Assert.Equal(100.0, r.Top1);
        Assert.Equal(100.0, r.Top5);
        Assert.Equal(20, r.K);
        Assert.Equal(testY, r.Predictions);
    }

    [Fact]
    public void Linear_probe_learns_a_separable_set_in_a_few_epochs()
    {
        var (trainX, trainY) = Separable(6, 100, 3);
        var (testX, testY) = Separable(6, 20, 4);
        // The MAE recipe moves LARS weights by about lr × trust per step, so a few epochs need a large lr.
        var options = new ProbeOptions { Epochs = 8, WarmupEpochs = 1, BatchSize = 32, BaseLr = 400, Seed = 1 };
        var losses = new List<double>();
        var r = LinearProbe.Train(trainX, trainY, testX, testY, 6, options, (_, l) => losses.Add(l));
        Assert.True(r.Top1 >= 99, $"top-1 {r.Top1}");
        Assert.Equal(100.0, r.Top5);
        Assert.Equal(8, losses.Count);
        Assert.True(losses[^1] < losses[0]);
        Assert.Equal(6, r.Confusion.Length);
        Assert.Equal(120, r.Confusion.Sum(row => row.Sum()));
        Assert.All(r.PerClass, a => Assert.True(a >= 90));

        // Same seed, same result.
        var again = LinearProbe.Train(trainX, trainY, testX, testY, 6, options);
        Assert.Equal(r.Predictions, again.Predictions);
        Assert.Equal(r.EpochLosses[^1], again.EpochLosses[^1]);
    }

    [Fact]
    public void Probe_head_is_bn_without_affine_and_a_small_linear()
    {
        using var head = new LinearProbe.Head(16, 4, seed: 0);
        Assert.Equal(2, head.parameters().Count()); // fc weight and bias only
        Assert.Equal(1e-6, head.Norm.eps);
        var w = head.Fc.weight!;
        Assert.InRange(w.std().item<float>(), 0.007f, 0.013f);
        Assert.Equal(0f, head.Fc.bias!.abs().sum().item<float>());
    }

    [Fact]
    public void Multilabel_probe_ranks_positives_first()
    {
        var (trainX, trainY) = Separable(3, 60, 5);
        var (testX, testY) = Separable(3, 20, 6);
        static Tensor Targets(int[] y) => nn.functional.one_hot(tensor(y.Select(v => (long)v).ToArray()), 3).to(float32);
        var options = new ProbeOptions { Epochs = 8, WarmupEpochs = 1, BatchSize = 32, BaseLr = 400 };
        var r = LinearProbe.TrainMultiLabel(trainX, Targets(trainY), testX, Targets(testY), options);
        Assert.True(r.MeanAuroc > 99, $"AUROC {r.MeanAuroc}");
        Assert.Equal(3, r.PerClassAuroc.Length);
    }

    [Fact]
    public void Feature_cache_reuses_features_while_the_key_is_unchanged()
    {
        var dir = Fixture.TempDir();
        int calls = 0;
        Tensor Extract() { calls++; return ones(3, 2); }
        using var a = FeatureCache.GetOrExtract(dir, new string('a', 64), 3, Extract, out var hit1);
        using var b = FeatureCache.GetOrExtract(dir, new string('a', 64), 3, Extract, out var hit2);
        using var c = FeatureCache.GetOrExtract(dir, new string('b', 64), 3, Extract, out var hit3);
        Assert.Equal((false, true, false, 2), (hit1, hit2, hit3, calls));
        Assert.Equal(0, Fixture.MaxAbsDiff(a, b));

        var model = new VisionTransformer(new VitConfig { ImgSize = 32, PatchSize = 16, EmbedDim = 12, Depth = 1, NumHeads = 2, NumClasses = 0 });
        var items = new[] { new ImageItem("/x.png", "x.png", 0) };
        var pre = Preprocess.ImageNet(32);
        var k1 = FeatureCache.Key(model, items, pre, FeatureKind.Cls);
        Assert.Equal(k1, FeatureCache.Key(model, items, pre, FeatureKind.Cls));
        Assert.NotEqual(k1, FeatureCache.Key(model, items, pre, FeatureKind.Avg));
        Assert.NotEqual(k1, FeatureCache.Key(model, items, pre with { CropPct = 1.0 }, FeatureKind.Cls));
        using (no_grad()) model.parameters().First().add_(1);
        Assert.NotEqual(k1, FeatureCache.Key(model, items, pre, FeatureKind.Cls));
    }
}
