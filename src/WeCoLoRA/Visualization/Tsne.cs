using TorchSharp;
using static TorchSharp.torch;

namespace WeCoLoRA.Visualization;

/// <summary>How the embedding starts: scikit-learn's PCA init (first two components, scaled to std 1e-4) or N(0, 1e-4²).</summary>
public enum TsneInit { Pca, Random }

/// <summary>Exact t-SNE settings; the defaults are scikit-learn's (TSNE(init="pca", learning_rate="auto", method="exact")).</summary>
public sealed record TsneOptions
{
    public int Components { get; init; } = 2;
    public double Perplexity { get; init; } = 30;
    /// <summary>Total iterations, the exaggerated ones included.</summary>
    public int Iterations { get; init; } = 1000;
    public double EarlyExaggeration { get; init; } = 12;
    public int ExaggerationIterations { get; init; } = 250;
    /// <summary>Null: scikit-learn's "auto", max(N / early exaggeration / 4, 50).</summary>
    public double? LearningRate { get; init; }
    public TsneInit Init { get; init; } = TsneInit.Pca;
    /// <summary>Seeds the random init (the PCA init is deterministic without it).</summary>
    public long Seed { get; init; }
    /// <summary>Stop when the gradient norm falls to this (checked every 50 iterations, as scikit-learn).</summary>
    public double MinGradNorm { get; init; } = 1e-7;
    /// <summary>Stop a phase when the KL divergence has not improved for this many iterations (checked every 50).</summary>
    public int IterationsWithoutProgress { get; init; } = 300;
}

/// <param name="Embedding">[N, components] float32.</param>
/// <param name="KlHistory">KL(P‖Q) every 50 iterations and at the end of each phase, with the 1-based iteration (exaggerated P in the first phase).</param>
/// <param name="Kl">KL(P‖Q) of the returned embedding, with the plain P.</param>
public sealed record TsneResult(Tensor Embedding, IReadOnlyList<(int Iteration, double Kl)> KlHistory, double Kl, int Iterations);

/// <summary>
/// Exact t-SNE (van der Maaten &amp; Hinton 2008) as scikit-learn's method="exact": squared Euclidean distances, a per-point
/// binary search on the Gaussian precision to match the perplexity, P = (P_cond + P_condᵀ) / sum, Student-t (one degree of
/// freedom) similarities in the embedding, gradient descent with early exaggeration for the first 250 iterations (momentum 0.5),
/// then momentum 0.8, with the delta-bar-delta gains of the reference implementation (+0.2 / ×0.8, floor 0.01) and momentum
/// and gains reset between the phases. All N×N work is TorchSharp tensor ops (float64 for the calibration, float32 after).
/// </summary>
public static class Tsne
{
    const double MachineEpsilon = 2.220446049250313e-16; // np.finfo(np.double).eps, scikit-learn's floor for P and Q
    const int CheckEvery = 50;

    public static TsneResult Fit(Tensor features, TsneOptions? options = null, IProgress<int>? progress = null, CancellationToken ct = default)
    {
        options ??= new TsneOptions();
        if (features.dim() != 2) throw new ArgumentException($"t-SNE needs features [N, D]; got [{string.Join(", ", features.shape)}]");
        long n = features.shape[0];
        if (options.Perplexity <= 0 || options.Perplexity >= n)
            throw new ArgumentException($"perplexity {options.Perplexity} must be positive and less than the number of samples ({n})");
        if (options.Iterations < 1 || options.ExaggerationIterations < 0 || options.Components < 1)
            throw new ArgumentException("t-SNE needs at least one iteration, a non-negative number of exaggerated iterations and at least one component");
        using var noGrad = no_grad();
        var x = features.detach().to(float64).cpu();
        using var p = JointProbabilities(x, options.Perplexity);
        double lr = options.LearningRate ?? Math.Max(n / options.EarlyExaggeration / 4, 50);
        var y = InitialEmbedding(x, options);

        var history = new List<(int, double)>();
        int exaggerated = Math.Min(options.ExaggerationIterations, options.Iterations);
        int done = Descend(p, y, options.EarlyExaggeration, momentum: 0.5, lr, 0, exaggerated, options, history, progress, ct);
        if (done == exaggerated)
            done = Descend(p, y, 1.0, momentum: 0.8, lr, exaggerated, options.Iterations, options, history, progress, ct);
        double kl = KlDivergence(p, y, out _, 1.0, withGradient: false);
        x.Dispose();
        return new TsneResult(y, history, kl, done);
    }

    /// <summary>
    /// Conditional probabilities P(j|i) [N, N] (float64, zero diagonal) from squared distances [N, N], each row's Gaussian
    /// precision found by scikit-learn's binary search (100 steps, entropy tolerance 1e-5) so that its entropy is log(perplexity).
    /// </summary>
    public static Tensor ConditionalProbabilities(Tensor squaredDistances, double perplexity)
    {
        const int steps = 100;
        const double tolerance = 1e-5;
        long n = squaredDistances.shape[0];
        double desired = Math.Log(perplexity);
        var result = empty(n, n, dtype: float64);
        const long chunk = 1024;
        for (long start = 0; start < n; start += chunk)
        {
            using var scope = NewDisposeScope();
            long m = Math.Min(chunk, n - start);
            var d = squaredDistances.narrow(0, start, m).to(float64);
            var self = zeros(m, n, dtype: @bool);
            self.scatter_(1, arange(start, start + m, dtype: int64).unsqueeze(1), ones(m, 1, dtype: @bool));
            var beta = ones(m, 1, dtype: float64);
            var lo = full(m, 1, double.NegativeInfinity, dtype: float64);
            var hi = full(m, 1, double.PositiveInfinity, dtype: float64);
            var converged = zeros(m, 1, dtype: @bool);
            // exp(−β d) off the diagonal, its row sums S (1e-8 when all underflow, as scikit-learn) and Σ d·exp(−β d).
            (Tensor E, Tensor Sum) Kernel(Tensor b)
            {
                var e = d.mul(b.neg()).exp_().masked_fill_(self, 0.0);
                var sum = e.sum(1, keepdim: true);
                return (e, where(sum == 0, full_like(sum, 1e-8), sum));
            }
            for (int step = 0; step < steps; step++)
            {
                using var stepScope = NewDisposeScope();
                var (e, sumP) = Kernel(beta);
                var weighted = d.unsqueeze(1).bmm(e.unsqueeze(2)).reshape(m, 1); // row-wise Σ_j d_ij e_ij without an N×N temporary
                // H = log S + β Σ_j d_ij p_ij with p = e / S.
                var entropy = sumP.log() + beta * weighted / sumP;
                var diff = entropy - desired;
                converged.logical_or_(diff.abs() <= tolerance);
                if (converged.all().item<bool>()) break;
                var up = (diff > 0).logical_and_(converged.logical_not());   // too flat: sharpen (raise beta)
                var down = (diff <= 0).logical_and_(converged.logical_not()); // too peaked: lower beta
                var newLo = where(up, beta, lo);
                var newHi = where(down, beta, hi);
                var raised = where(hi.isinf(), beta * 2, (beta + hi) / 2);
                var lowered = where(lo.isinf(), beta / 2, (beta + lo) / 2);
                var newBeta = where(up, raised, where(down, lowered, beta));
                lo.copy_(newLo);
                hi.copy_(newHi);
                beta.copy_(newBeta);
            }
            var (final, finalSum) = Kernel(beta);
            result.narrow(0, start, m).copy_(final.div_(finalSum));
        }
        return result;
    }

    /// <summary>Squared Euclidean distances [N, N] (float64, clamped at 0).</summary>
    public static Tensor SquaredDistances(Tensor x)
    {
        using var scope = NewDisposeScope();
        var x64 = x.to(float64);
        var sq = (x64 * x64).sum(1, keepdim: true);
        var d = x64.mm(x64.t()).mul_(-2).add_(sq).add_(sq.t()).clamp_min_(0);
        d.diagonal().zero_();
        return d.MoveToOuterDisposeScope();
    }

    /// <summary>The joint P [N, N] (float32): (P_cond + P_condᵀ) / its sum, floored at machine epsilon, zero diagonal.</summary>
    public static Tensor JointProbabilities(Tensor x, double perplexity)
    {
        using var scope = NewDisposeScope();
        var conditional = ConditionalProbabilities(SquaredDistances(x), perplexity);
        var p = conditional + conditional.t();
        p /= Math.Max(p.sum().item<double>(), MachineEpsilon);
        p = p.clamp_min_(MachineEpsilon);
        p.diagonal().zero_();
        return p.to(float32).MoveToOuterDisposeScope();
    }

    static Tensor InitialEmbedding(Tensor x, TsneOptions options)
    {
        using var scope = NewDisposeScope();
        long n = x.shape[0];
        int k = options.Components;
        Tensor y;
        if (options.Init == TsneInit.Random || x.shape[1] < k)
        {
            var g = new Generator((ulong)options.Seed);
            y = randn(n, k, dtype: float32, generator: g) * 1e-4;
        }
        else
        {
            var centered = x - x.mean([0], keepdim: true);
            var (_, vectors) = linalg.eigh(centered.t().mm(centered));
            var top = vectors.narrow(1, vectors.shape[1] - k, k).flip(1); // largest variance first
            // svd_flip-like: the largest-magnitude loading of each component is positive, so the sign is deterministic.
            var idx = top.abs().argmax(0);
            var signs = top.gather(0, idx.unsqueeze(0)).sign();
            signs = where(signs == 0, ones_like(signs), signs);
            var projected = centered.mm(top * signs);
            double std = projected[.., 0].std(unbiased: false).item<double>();
            y = (projected / (std > 0 ? std : 1.0) * 1e-4).to(float32);
        }
        return y.contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>Gradient descent for iterations [from, to); returns the iteration count reached (less than <paramref name="to"/> when converged).</summary>
    static int Descend(Tensor p, Tensor y, double exaggeration, double momentum, double lr, int from, int to, TsneOptions options,
        List<(int, double)> history, IProgress<int>? progress, CancellationToken ct)
    {
        using var update = zeros_like(y);
        using var gains = ones_like(y);
        double best = double.PositiveInfinity;
        int bestIteration = from;
        for (int i = from; i < to; i++)
        {
            ct.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            bool check = (i + 1) % CheckEvery == 0 || i == to - 1;
            double kl = KlDivergence(p, y, out var grad, exaggeration, withGradient: true, withError: check);
            var increasing = (update * grad) < 0;
            gains.copy_(where(increasing, gains + 0.2, gains * 0.8).clamp_min_(0.01));
            grad.mul_(gains);
            update.mul_(momentum).add_(grad, alpha: -lr);
            y.add_(update);
            progress?.Report(i + 1);
            if (!check) continue;
            history.Add((i + 1, kl));
            if (kl < best)
            {
                best = kl;
                bestIteration = i;
            }
            else if (i - bestIteration > options.IterationsWithoutProgress)
            {
                return i + 1;
            }
            if (grad.norm().item<float>() <= options.MinGradNorm) return i + 1;
        }
        return to;
    }

    /// <summary>KL(exaggeration·P ‖ Q) and its gradient 4 Σ_j (p_ij − q_ij)(1 + |y_i − y_j|²)⁻¹ (y_i − y_j).</summary>
    static double KlDivergence(Tensor p, Tensor y, out Tensor gradient, double exaggeration, bool withGradient, bool withError = true)
    {
        // Few passes over the N×N memory: this is the whole cost of an iteration.
        using var scope = NewDisposeScope();
        var sq = (y * y).sum(1, keepdim: true);
        // 1 + |y_i|² + |y_j|² − 2 y_i·y_j in one addmm, floored at 1 (distances are ≥ 0), inverted: the Student-t kernel W.
        var w = addmm(sq.t() + 1, y, y.t(), beta: 1, alpha: -2).add_(sq).clamp_min_(1).reciprocal_();
        w.diagonal().zero_();
        double z = w.sum().item<float>();
        double kl = double.NaN;
        if (withError)
        {
            // Σ P log(P / Q) with Q = max(W / Z, ε), over i ≠ j (P's diagonal is 0 and contributes nothing).
            var scaled = p * exaggeration;
            var logRatio = scaled.clamp_min(MachineEpsilon).log_().sub_(w.div(z).clamp_min_(MachineEpsilon).log_());
            kl = scaled.mul_(logRatio).sum().item<float>();
        }
        gradient = null!;
        if (withGradient)
        {
            var pq = w.mul(-1.0 / z).add_(p, alpha: exaggeration).mul_(w); // (P − Q) ∘ W
            gradient = y.mul(pq.sum(1, keepdim: true)).sub_(pq.mm(y)).mul_(4.0).MoveToOuterDisposeScope();
        }
        return kl;
    }
}
