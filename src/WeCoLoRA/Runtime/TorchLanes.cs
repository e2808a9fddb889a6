using TorchSharp;

namespace WeCoLoRA.Runtime;

/// <summary>
/// Dedicated threads ("lanes") that each run libtorch with its own small intra-op thread count, so that a batch can be
/// split into shards that run side by side. On a few CPU cores this beats one stream with every core on each op: small
/// ops stop paying OpenMP fork/join and load imbalance, and each matmul keeps a core to itself (docs/performance.md).
/// </summary>
public sealed class TorchLanes : IDisposable
{
    readonly Thread[] threads;
    readonly SemaphoreSlim[] start;
    readonly CountdownEvent done;
    Action<int>? work;
    Exception?[] errors;
    volatile bool stopping;

    public int Count => threads.Length;

    /// <summary>The lane count for <paramref name="requested"/> (0 = one lane per intra-op thread), at most one per image of the batch.</summary>
    public static int Resolve(int requested, int threads, int batch) => Math.Max(1, Math.Min(requested > 0 ? requested : threads, batch));

    /// <summary>Lanes for a run of <paramref name="count"/>, each with its share of <paramref name="threads"/>; null for one lane (the calling thread).</summary>
    public static TorchLanes? Create(int count, int threads) => count > 1 ? new TorchLanes(count, Math.Max(1, threads / count)) : null;

    /// <param name="count">Number of lanes.</param>
    /// <param name="threadsPerLane">libtorch intra-op threads of each lane.</param>
    public TorchLanes(int count, int threadsPerLane)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(threadsPerLane, 1);
        int processThreads = torch.get_num_threads();
        threads = new Thread[count];
        start = [.. Enumerable.Range(0, count).Select(_ => new SemaphoreSlim(0))];
        errors = new Exception?[count];
        done = new CountdownEvent(count);
        for (int i = 0; i < count; i++)
        {
            int lane = i;
            threads[i] = new Thread(() => Loop(lane, threadsPerLane)) { IsBackground = true, Name = $"torch lane {lane}" };
            threads[i].Start();
        }
        done.Wait(); // every lane has set its thread count
        // set_num_threads also sets the default that threads starting later inherit; give the process its own back.
        torch.set_num_threads(processThreads);
    }

    void Loop(int lane, int threadsPerLane)
    {
        // get_num_threads first: libtorch initialises a thread's count lazily, on its first parallel op, from the
        // process default, which would undo a count set before that.
        _ = torch.get_num_threads();
        torch.set_num_threads(threadsPerLane);
        done.Signal();
        while (true)
        {
            start[lane].Wait();
            if (stopping) return;
            try
            {
                work!(lane);
            }
            catch (Exception e)
            {
                errors[lane] = e;
            }
            done.Signal();
        }
    }

    /// <summary>Runs <paramref name="laneWork"/>(lane) on every lane and waits for all; rethrows the lowest lane's error.</summary>
    public void Run(Action<int> laneWork)
    {
        work = laneWork;
        errors = new Exception?[Count];
        done.Reset();
        foreach (var s in start) s.Release();
        done.Wait();
        work = null;
        if (errors.FirstOrDefault(e => e is not null) is { } error)
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(error).Throw();
    }

    public void Dispose()
    {
        stopping = true;
        foreach (var s in start) s.Release();
        foreach (var t in threads) t.Join();
        foreach (var s in start) s.Dispose();
        done.Dispose();
    }
}
