using System.Diagnostics;
using static TorchSharp.torch;

namespace WeCoLoRA.Benchmarking;

/// <summary>The machine's achievable matmul throughput: the best of a few timed square matmuls, in GFLOP/s.</summary>
public static class MatmulPeak
{
    public static double Measure(ScalarType dtype, int n = 2048, int repeats = 5)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var a = randn(n, n).to(dtype);
        var b = randn(n, n).to(dtype);
        a.matmul(b).Dispose(); // warm-up: first-call dispatch, packing buffers
        double best = double.MaxValue;
        for (int i = 0; i < repeats; i++)
        {
            var t = Stopwatch.GetTimestamp();
            a.matmul(b).Dispose();
            best = Math.Min(best, Stopwatch.GetElapsedTime(t).TotalSeconds);
        }
        return 2.0 * n * n * n / best / 1e9;
    }
}
