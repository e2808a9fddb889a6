using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.ExceptionServices;
using TorchSharp;

namespace WeCoLoRA.Data;

/// <summary>Writes one normalized CHW sample (3 x H x W floats) for item <c>index</c> decoded as <c>image</c> into <c>destination</c>.</summary>
public delegate void SampleTransform(int index, RgbImage image, Span<float> destination);

/// <summary>A batch of images [B, 3, H, W] float32 and the item indices they came from. Dispose to free the tensor.</summary>
public sealed class Batch(torch.Tensor images, int[] indices) : IDisposable
{
    public torch.Tensor Images { get; } = images;

    /// <summary>Indices into the loader's item list, in batch order.</summary>
    public int[] Indices { get; } = indices;

    public void Dispose() => Images.Dispose();
}

/// <summary>
/// Decodes and transforms images on background threads and yields batches in order, with a bounded number of batches
/// prepared ahead. Output is independent of thread timing: each sample lands in its own slot, and any randomness must come
/// from <see cref="SampleRandom"/> (seeded by seed, epoch and item index), never from shared state.
/// Items are decoded with <see cref="ImageItem.Load"/> (a file, or an in-memory <see cref="IImageSource"/>).
/// A decode or transform failure is rethrown (with the file's path for decode errors) when its batch is reached.
/// </summary>
public sealed class BatchLoader : IDisposable
{
    private readonly IReadOnlyList<ImageItem> _items;
    private readonly int[] _order;
    private readonly int _batchSize, _height, _width, _workers, _prefetch;
    private readonly bool _dropLast;
    private readonly long _maxPixels;
    private readonly SampleTransform _transform;
    private readonly CancellationTokenSource _disposed = new();
    private long _waitedTicks;

    /// <param name="items">Images to load.</param>
    /// <param name="batchSize">Samples per batch; the last batch may be smaller unless <paramref name="dropLast"/>.</param>
    /// <param name="sampleHeight">H of every transformed sample.</param>
    /// <param name="sampleWidth">W of every transformed sample.</param>
    /// <param name="transform">Fills one sample; called concurrently from worker threads.</param>
    /// <param name="order">Item indices in the order to load them (e.g. a shuffled epoch); default 0..n-1. May repeat or omit items.</param>
    /// <param name="workers">Decode threads; 0 = <see cref="Environment.ProcessorCount"/>.</param>
    /// <param name="prefetch">Batches prepared ahead of the consumer (at least 1).</param>
    /// <param name="dropLast">Skip a final incomplete batch.</param>
    /// <param name="maxPixels">Decompression-bomb limit passed to <see cref="ImageDecoder.Decode(string, long)"/>.</param>
    public BatchLoader(IReadOnlyList<ImageItem> items, int batchSize, int sampleHeight, int sampleWidth, SampleTransform transform,
        int[]? order = null, int workers = 0, int prefetch = 3, bool dropLast = false, long maxPixels = ImageDecoder.DefaultMaxPixels)
    {
        ArgumentNullException.ThrowIfNull(items);
        ArgumentNullException.ThrowIfNull(transform);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(sampleHeight);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(sampleWidth);
        ArgumentOutOfRangeException.ThrowIfNegative(workers);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(prefetch);
        _order = order is null ? Enumerable.Range(0, items.Count).ToArray() : (int[])order.Clone();
        foreach (var i in _order)
            if ((uint)i >= (uint)items.Count)
                throw new ArgumentOutOfRangeException(nameof(order), $"order contains {i}, but there are {items.Count} items.");
        _items = items;
        _batchSize = batchSize;
        _height = sampleHeight;
        _width = sampleWidth;
        _transform = transform;
        _workers = workers == 0 ? Environment.ProcessorCount : workers;
        _prefetch = prefetch;
        _dropLast = dropLast;
        _maxPixels = maxPixels;
    }

    /// <summary>Same, with a transform that returns a new float[3 * H * W] per sample (copied into the batch).</summary>
    public BatchLoader(IReadOnlyList<ImageItem> items, int batchSize, int sampleHeight, int sampleWidth, Func<int, RgbImage, float[]> transform,
        int[]? order = null, int workers = 0, int prefetch = 3, bool dropLast = false, long maxPixels = ImageDecoder.DefaultMaxPixels)
        : this(items, batchSize, sampleHeight, sampleWidth, CopyingTransform(transform, 3 * sampleHeight * sampleWidth),
            order, workers, prefetch, dropLast, maxPixels)
    {
    }

    /// <summary>
    /// A loader applying <paramref name="preprocess"/>: <see cref="Preprocess.Eval"/> when <paramref name="trainSeed"/> is null,
    /// otherwise <see cref="Preprocess.Train"/> with <see cref="SampleRandom"/>(seed, epoch, item index).
    /// </summary>
    public static BatchLoader ForPreprocess(IReadOnlyList<ImageItem> items, int batchSize, Preprocess preprocess,
        int? trainSeed = null, int epoch = 0, int[]? order = null, int workers = 0, int prefetch = 3, bool dropLast = false,
        long maxPixels = ImageDecoder.DefaultMaxPixels)
    {
        SampleTransform t = trainSeed is int seed
            ? (i, img, dst) => preprocess.Normalize(preprocess.Train(img, SampleRandom(seed, epoch, i)), dst)
            : (_, img, dst) => preprocess.Normalize(preprocess.Eval(img), dst);
        return new BatchLoader(items, batchSize, preprocess.ImgSize, preprocess.ImgSize, t, order, workers, prefetch, dropLast, maxPixels);
    }

    /// <summary>The per-sample random source: a <see cref="Random"/> seeded by a hash of (seed, epoch, item index).</summary>
    public static Random SampleRandom(int seed, int epoch, int index)
    {
        ulong h = SplitMix((ulong)(uint)seed);
        h = SplitMix(h ^ (ulong)(uint)epoch);
        h = SplitMix(h ^ (ulong)(uint)index);
        return new Random((int)(h >> 33)); // non-negative 31-bit seed
    }

    private static ulong SplitMix(ulong x)
    {
        x += 0x9E3779B97F4A7C15UL;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9UL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBUL;
        return x ^ (x >> 31);
    }

    public int BatchCount => _dropLast ? _order.Length / _batchSize : (_order.Length + _batchSize - 1) / _batchSize;

    public int SampleCount => _dropLast ? BatchCount * _batchSize : _order.Length;

    /// <summary>Total time the consumer spent blocked waiting for a batch, over all enumerations.</summary>
    public TimeSpan WaitedTime => TimeSpan.FromTicks(Interlocked.Read(ref _waitedTicks));

    /// <summary>Enumerates the batches in order; worker threads live only while the enumeration does.</summary>
    public IEnumerable<Batch> GetBatches(CancellationToken ct = default)
    {
        ObjectDisposedException.ThrowIf(_disposed.IsCancellationRequested, this);
        return Run(ct);
    }

    private sealed class Job(int[] indices)
    {
        public readonly int[] Indices = indices;
        public float[]? Buffer;
        public int Remaining = indices.Length;
        public Exception? Error;
        public readonly ManualResetEventSlim Done = new(false);
    }

    private IEnumerable<Batch> Run(CancellationToken ct)
    {
        int sampleLen = 3 * _height * _width;
        var jobs = new Job[BatchCount];
        for (int b = 0; b < jobs.Length; b++)
        {
            int start = b * _batchSize, count = Math.Min(_batchSize, SampleCount - start);
            jobs[b] = new Job(_order.AsSpan(start, count).ToArray());
        }
        if (jobs.Length == 0)
            yield break;

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct, _disposed.Token);
        var token = cts.Token;
        using var slots = new SemaphoreSlim(_prefetch, _prefetch);
        using var work = new BlockingCollection<(Job Job, int Slot)>();
        var threads = new List<Thread>();
        Exception? dispatcherError = null;

        var dispatcher = new Thread(() =>
        {
            try
            {
                foreach (var job in jobs)
                {
                    slots.Wait(token);
                    job.Buffer = GC.AllocateUninitializedArray<float>(job.Indices.Length * sampleLen);
                    for (int s = 0; s < job.Indices.Length; s++)
                        work.Add((job, s), token);
                }
            }
            catch (OperationCanceledException) { }
            catch (Exception e) { dispatcherError = e; cts.Cancel(); }
            finally { work.CompleteAdding(); }
        }) { IsBackground = true, Name = "BatchLoader dispatcher" };
        threads.Add(dispatcher);
        for (int w = 0; w < _workers; w++)
            threads.Add(new Thread(() => Work(work, sampleLen, token)) { IsBackground = true, Name = $"BatchLoader worker {w}" });
        foreach (var t in threads) t.Start();

        var sw = new Stopwatch();
        try
        {
            foreach (var job in jobs)
            {
                token.ThrowIfCancellationRequested();
                if (!job.Done.IsSet)
                {
                    sw.Restart();
                    try
                    {
                        job.Done.Wait(token);
                    }
                    finally
                    {
                        Interlocked.Add(ref _waitedTicks, sw.Elapsed.Ticks);
                    }
                }
                if (dispatcherError is not null) ExceptionDispatchInfo.Throw(dispatcherError);
                if (job.Error is not null) ExceptionDispatchInfo.Throw(job.Error);
                // frombuffer shares the array (pinned until the tensor is freed); torch.tensor(float[], dims) would copy it.
                torch.Tensor tensor;
                using (var flat = torch.frombuffer(job.Buffer!, torch.ScalarType.Float32))
                    tensor = flat.view(job.Indices.Length, 3, _height, _width);
                job.Buffer = null;
                job.Done.Dispose();
                slots.Release();
                yield return new Batch(tensor, job.Indices);
            }
        }
        finally
        {
            cts.Cancel();
            foreach (var t in threads) t.Join();
            foreach (var job in jobs) job.Done.Dispose();
        }
    }

    private void Work(BlockingCollection<(Job Job, int Slot)> work, int sampleLen, CancellationToken token)
    {
        try
        {
            foreach (var (job, slot) in work.GetConsumingEnumerable(token))
            {
                if (job.Error is null)
                {
                    try
                    {
                        int index = job.Indices[slot];
                        var image = _items[index].Load(_maxPixels);
                        _transform(index, image, job.Buffer.AsSpan(slot * sampleLen, sampleLen));
                    }
                    catch (Exception e)
                    {
                        Interlocked.CompareExchange(ref job.Error, e, null);
                    }
                }
                if (Interlocked.Decrement(ref job.Remaining) == 0)
                    job.Done.Set();
            }
        }
        catch (OperationCanceledException) { }
    }

    private static SampleTransform CopyingTransform(Func<int, RgbImage, float[]> f, int length) => (i, img, dst) =>
    {
        var v = f(i, img);
        if (v.Length != length)
            throw new InvalidOperationException($"transform returned {v.Length} floats for item {i}; expected {length} (3 x H x W).");
        v.CopyTo(dst);
    };

    /// <summary>Stops any running enumeration's workers (its next wait throws <see cref="OperationCanceledException"/>).</summary>
    public void Dispose()
    {
        if (!_disposed.IsCancellationRequested) _disposed.Cancel();
    }
}
