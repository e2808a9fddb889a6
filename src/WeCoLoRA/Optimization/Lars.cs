using static TorchSharp.torch;

namespace WeCoLoRA.Optimization;

/// <summary>
/// LARS as in MAE's <c>util/lars.py</c> (no rate scaling for 1-D parameters: biases, norms). For each parameter p with
/// gradient g: if p.ndim &gt; 1, g += wd·p and g *= q where q = trust·‖p‖/‖g‖ when both norms are positive, else 1; then
/// μ = momentum·μ + g and p -= lr·μ.
/// </summary>
public sealed class Lars : IDisposable
{
    private readonly Tensor[] _params;
    private readonly Tensor?[] _mu;

    public double Momentum { get; }
    public double TrustCoefficient { get; }
    public double WeightDecay { get; }

    public Lars(IEnumerable<Tensor> parameters, double momentum = 0.9, double trustCoefficient = 0.001, double weightDecay = 0)
    {
        _params = [.. parameters];
        _mu = new Tensor?[_params.Length];
        Momentum = momentum;
        TrustCoefficient = trustCoefficient;
        WeightDecay = weightDecay;
    }

    /// <summary>One update with learning rate <paramref name="lr"/>; parameters without a gradient are skipped.</summary>
    public void Step(double lr)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        for (int i = 0; i < _params.Length; i++)
        {
            var p = _params[i];
            var grad = p.grad;
            if (grad is null) continue;
            var dp = grad;
            if (p.dim() > 1)
            {
                dp = dp.add(p, alpha: WeightDecay);
                var paramNorm = p.norm();
                var updateNorm = dp.norm();
                var one = ones_like(paramNorm);
                var q = where(paramNorm > 0, where(updateNorm > 0, TrustCoefficient * paramNorm / updateNorm, one), one);
                dp = dp.mul(q);
            }
            if (_mu[i] is null)
                _mu[i] = zeros_like(p).DetachFromDisposeScope();
            _mu[i]!.mul_(Momentum).add_(dp);
            p.add_(_mu[i]!, alpha: -lr);
        }
    }

    /// <summary>Sets every parameter's gradient to zero.</summary>
    public void ZeroGrad()
    {
        using var scope = NewDisposeScope(); // frees the wrappers that reading .grad creates
        foreach (var p in _params)
            p.grad?.zero_();
    }

    public void Dispose()
    {
        foreach (var m in _mu) m?.Dispose();
    }
}
