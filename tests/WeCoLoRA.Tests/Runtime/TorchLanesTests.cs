using TorchSharp;
using WeCoLoRA.Runtime;
using WeCoLoRA.Tests.Cli;

namespace WeCoLoRA.Tests.Runtime;

/// <summary>Thread counts are partly process-wide in libtorch, so these run in the collection that runs alone.</summary>
[Collection(nameof(ConsoleCollection))]
public sealed class TorchLanesTests
{
    [Fact]
    public void Each_lane_runs_libtorch_on_its_own_thread_count_and_other_threads_keep_theirs()
    {
        int before = torch.get_num_threads();
        using var lanes = new TorchLanes(3, 1);
        var seen = new int[3];
        lanes.Run(lane => seen[lane] = torch.get_num_threads());
        Assert.Equal([1, 1, 1], seen);
        Assert.Equal(before, torch.get_num_threads());
        int later = 0;
        var thread = new Thread(() => later = torch.get_num_threads());
        thread.Start();
        thread.Join();
        Assert.Equal(before, later);
    }

    [Fact]
    public void A_lanes_error_reaches_the_caller_and_the_lanes_stay_usable()
    {
        using var lanes = new TorchLanes(2, 1);
        var e = Assert.Throws<InvalidOperationException>(() => lanes.Run(lane => { if (lane == 1) throw new InvalidOperationException("lane 1 failed"); }));
        Assert.Equal("lane 1 failed", e.Message);
        int ran = 0;
        lanes.Run(_ => Interlocked.Increment(ref ran));
        Assert.Equal(2, ran);
    }

    [Theory]
    [InlineData(0, 2, 32, 2)] // auto: one lane per thread
    [InlineData(0, 8, 3, 3)] // at most one lane per image
    [InlineData(3, 2, 32, 3)]
    [InlineData(1, 16, 32, 1)]
    public void Lane_counts_resolve(int requested, int threads, int batch, int expected) =>
        Assert.Equal(expected, TorchLanes.Resolve(requested, threads, batch));
}
