using WeCoLoRA.Optimization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace WeCoLoRA.Evaluation;

/// <summary>MAE's linear-probing recipe (main_linprobe.py); the defaults are the paper's.</summary>
public sealed record ProbeOptions
{
    public int Epochs { get; init; } = 50;
    public int WarmupEpochs { get; init; } = 10;
    public int BatchSize { get; init; } = 512;
    /// <summary>Base learning rate; the actual one is <see cref="Lr"/> = BaseLr × BatchSize / 256.</summary>
    public double BaseLr { get; init; } = 0.1;
    public double MinLr { get; init; } = 0;
    public double WeightDecay { get; init; } = 0;
    public double Momentum { get; init; } = 0.9;
    public double TrustCoefficient { get; init; } = 0.001;
    /// <summary>Seeds the head's initialisation and the per-epoch shuffles.</summary>
    public int Seed { get; init; }

    public double Lr => BaseLr * BatchSize / 256;
}

/// <summary>Single-label probe results: accuracies in percent; <see cref="TopK"/> = min(5, classes) is the k of <see cref="Top5"/>.</summary>
public sealed record ProbeResult(double Top1, double Top5, int TopK, double?[] PerClass, long[][] Confusion, int[] Predictions, double[] EpochLosses);

/// <summary>Multi-label probe results: AUROC per class (null where the test set has only positives or only negatives) and their mean.</summary>
public sealed record MultiLabelProbeResult(double MeanAuroc, double?[] PerClassAuroc, double[] EpochLosses);

/// <summary>
/// Linear probing on frozen features ([N, D] float32, e.g. from <see cref="FeatureExtractor"/>): head = BatchNorm1d(D,
/// affine = false, eps 1e-6) + Linear(D, C) (weight trunc-normal std 0.01, bias 0), trained with <see cref="Lars"/> at
/// lr = blr × batch / 256 following <see cref="LrSchedule"/> per iteration, on batches of a seeded shuffle. As MAE's loader,
/// an epoch drops the last incomplete batch (unless the whole set is smaller than one batch, which is then one batch).
/// </summary>
public static class LinearProbe
{
    /// <summary>Cross-entropy probe; labels are class indices in [0, classes).</summary>
    public static ProbeResult Train(Tensor trainFeatures, IReadOnlyList<int> trainLabels, Tensor testFeatures, IReadOnlyList<int> testLabels,
        int classes, ProbeOptions? options = null, Action<int, double>? onEpoch = null)
    {
        CheckRows(trainFeatures, trainLabels.Count, "train");
        CheckRows(testFeatures, testLabels.Count, "test");
        foreach (var l in trainLabels.Concat(testLabels))
            if ((uint)l >= (uint)classes) throw new ArgumentException($"label {l} is outside [0, {classes}).");
        using var y = tensor(trainLabels.Select(l => (long)l).ToArray());
        var (head, losses) = Fit(trainFeatures, classes, options ?? new(), (logits, idx) =>
        {
            using var target = y.index_select(0, idx);
            return nn.functional.cross_entropy(logits, target);
        }, onEpoch);
        using (head)
        {
            using var logits = Predict(head, testFeatures);
            int k = Math.Min(5, classes);
            using var top = logits.topk(k, dim: 1).indexes;
            var topk = top.data<long>().ToArray();
            int n = testLabels.Count, correct1 = 0, correctK = 0;
            var predictions = new int[n];
            for (int i = 0; i < n; i++)
            {
                predictions[i] = (int)topk[i * k];
                if (predictions[i] == testLabels[i]) correct1++;
                for (int j = 0; j < k; j++)
                    if (topk[i * k + j] == testLabels[i]) { correctK++; break; }
            }
            var confusion = Metrics.Confusion(testLabels, predictions, classes);
            return new ProbeResult(Percent(correct1, n), Percent(correctK, n), k, Metrics.PerClassAccuracy(confusion), confusion, predictions, losses);
        }
    }

    /// <summary>Multi-label probe: targets [N, C] of 0/1, BCE-with-logits; scored by mean AUROC (percent) over the classes that have one.</summary>
    public static MultiLabelProbeResult TrainMultiLabel(Tensor trainFeatures, Tensor trainTargets, Tensor testFeatures, Tensor testTargets,
        ProbeOptions? options = null, Action<int, double>? onEpoch = null)
    {
        CheckRows(trainFeatures, trainTargets.shape[0], "train");
        CheckRows(testFeatures, testTargets.shape[0], "test");
        int classes = (int)trainTargets.shape[1];
        if (testTargets.shape[1] != classes) throw new ArgumentException($"train has {classes} classes, test {testTargets.shape[1]}.");
        using var y = trainTargets.to(float32);
        var (head, losses) = Fit(trainFeatures, classes, options ?? new(), (logits, idx) =>
        {
            using var target = y.index_select(0, idx);
            return nn.functional.binary_cross_entropy_with_logits(logits, target);
        }, onEpoch);
        using (head)
        {
            using var logits = Predict(head, testFeatures);
            using var scoresT = logits.to(float64).t().contiguous();
            using var truthT = testTargets.to(float64).t().contiguous();
            var scores = scoresT.data<double>().ToArray();
            var truth = truthT.data<double>().ToArray();
            int n = (int)testTargets.shape[0];
            var perClass = new double?[classes];
            for (int c = 0; c < classes; c++)
            {
                var auc = Metrics.Auroc(new ArraySegment<double>(scores, c * n, n), [.. truth.Skip(c * n).Take(n).Select(v => v > 0.5)]);
                perClass[c] = auc * 100;
            }
            var defined = perClass.Where(a => a.HasValue).Select(a => a!.Value).ToArray();
            return new MultiLabelProbeResult(defined.Length == 0 ? double.NaN : defined.Average(), perClass, losses);
        }
    }

    /// <summary>The head: BatchNorm1d (no affine, eps 1e-6) then Linear.</summary>
    public sealed class Head : nn.Module<Tensor, Tensor>
    {
        public BatchNorm1d Norm { get; }
        public Linear Fc { get; }

        public Head(int dim, int classes, int seed) : base("probe_head")
        {
            Norm = nn.BatchNorm1d(dim, eps: 1e-6, affine: false);
            Fc = nn.Linear(dim, classes);
            register_module("norm", Norm);
            register_module("fc", Fc);
            var rng = new Random(seed);
            var w = new float[classes * dim];
            for (int i = 0; i < w.Length; i++) w[i] = (float)TruncNormal(rng, 0.01);
            using var _ = no_grad();
            using var wt = tensor(w).reshape(classes, dim);
            Fc.weight!.copy_(wt);
            Fc.bias!.zero_();
        }

        public override Tensor forward(Tensor x) => Fc.forward(Norm.forward(x));
    }

    /// <summary>timm's trunc_normal_(std) with its absolute bounds [-2, 2] (a redraw outside them).</summary>
    private static double TruncNormal(Random rng, double std)
    {
        while (true)
        {
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            double v = std * Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
            if (v is >= -2 and <= 2) return v;
        }
    }

    private static (Head Head, double[] Losses) Fit(Tensor x, int outputs, ProbeOptions o, Func<Tensor, Tensor, Tensor> loss, Action<int, double>? onEpoch)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(o.Epochs);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(o.BatchSize);
        ArgumentOutOfRangeException.ThrowIfNegative(o.WarmupEpochs);
        int n = (int)x.shape[0], dim = (int)x.shape[1];
        if (n < 2) throw new ArgumentException($"linear probing needs at least 2 training samples, got {n}.");
        var features = x.to(float32);
        var head = new Head(dim, outputs, o.Seed);
        try
        {
            using var lars = new Lars(head.parameters(), o.Momentum, o.TrustCoefficient, o.WeightDecay);
            int batch = Math.Min(o.BatchSize, n), iters = n / batch;
            var rng = new Random(o.Seed);
            var order = Enumerable.Range(0, n).ToArray();
            var losses = new double[o.Epochs];
            head.train();
            for (int epoch = 0; epoch < o.Epochs; epoch++)
            {
                rng.Shuffle(order);
                double sum = 0;
                for (int it = 0; it < iters; it++)
                {
                    using var scope = NewDisposeScope();
                    double lr = LrSchedule.At(epoch + (double)it / iters, o.Lr, o.WarmupEpochs, o.Epochs, o.MinLr);
                    var idx = tensor(order.AsSpan(it * batch, batch).ToArray().Select(i => (long)i).ToArray());
                    var l = loss(head.forward(features.index_select(0, idx)), idx);
                    lars.ZeroGrad();
                    l.backward();
                    lars.Step(lr);
                    sum += l.item<float>();
                }
                losses[epoch] = sum / iters;
                onEpoch?.Invoke(epoch, losses[epoch]);
            }
            return (head, losses);
        }
        catch
        {
            head.Dispose();
            throw;
        }
        finally
        {
            if (!ReferenceEquals(features, x)) features.Dispose();
        }
    }

    private static Tensor Predict(Head head, Tensor features)
    {
        head.eval();
        using var _ = no_grad();
        using var f = features.to(float32);
        return head.forward(f);
    }

    private static void CheckRows(Tensor features, long rows, string what)
    {
        if (features.dim() != 2) throw new ArgumentException($"{what} features must be [N, D], got [{string.Join(", ", features.shape)}].");
        if (features.shape[0] != rows) throw new ArgumentException($"{what}: {features.shape[0]} feature rows but {rows} labels.");
    }

    private static double Percent(int k, int n) => n == 0 ? 0 : 100.0 * k / n;
}
