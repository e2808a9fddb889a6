using WeCoLoRA.Data;
using Xunit;

namespace WeCoLoRA.Tests.Data;

public class BatchLoaderTests
{
    private static readonly string[] Files =
        ["rgb.png", "rgba.png", "palette.png", "gray.png", "rgb.jpg", "cmyk.jpg", "rgb.bmp", "anim.gif", "lossless.webp", "big.png", "gray16.png"];

    private static List<ImageItem> Items() => Files.Select(f => new ImageItem(Fixtures.Src(f), f, -1)).ToList();

    private static List<(float[] Data, long[] Shape, int[] Indices)> Collect(BatchLoader loader)
    {
        var result = new List<(float[], long[], int[])>();
        foreach (var b in loader.GetBatches())
            using (b)
                result.Add((b.Images.data<float>().ToArray(), b.Images.shape, b.Indices));
        return result;
    }

    [Fact]
    public void SameBatchesInOrderForAnyWorkerCount()
    {
        var items = Items();
        var pre = Preprocess.ImageNet(16);
        var order = Enumerable.Range(0, items.Count).Reverse().Concat([3, 3]).ToArray();
        List<(float[] Data, long[] Shape, int[] Indices)> Run(int workers, int prefetch)
        {
            using var loader = BatchLoader.ForPreprocess(items, 4, pre, trainSeed: 11, epoch: 1, order: order, workers: workers, prefetch: prefetch);
            return Collect(loader);
        }
        var one = Run(1, 1);
        var four = Run(4, 3);
        Assert.Equal(4, one.Count);
        Assert.Equal(new long[] { 1, 3, 16, 16 }, one[^1].Shape);
        Assert.Equal(order, one.SelectMany(b => b.Indices));
        for (int i = 0; i < one.Count; i++)
        {
            Assert.Equal(one[i].Indices, four[i].Indices);
            Assert.Equal(one[i].Shape, four[i].Shape);
            Assert.Equal(one[i].Data, four[i].Data);
        }
        // Each sample equals the single-threaded transform with the same per-sample seed.
        var expected = new float[pre.SampleLength];
        int idx = one[0].Indices[1];
        pre.Normalize(pre.Train(ImageDecoder.Decode(items[idx].Path), BatchLoader.SampleRandom(11, 1, idx)), expected);
        Assert.Equal(expected, one[0].Data.AsSpan(pre.SampleLength, pre.SampleLength).ToArray());
        // Same sample index repeated in one epoch (order has 3 twice) gives the same augmentation; another epoch differs.
        using var other = BatchLoader.ForPreprocess(items, 4, pre, trainSeed: 11, epoch: 2, order: order, workers: 2);
        Assert.NotEqual(one[0].Data, Collect(other)[0].Data);
    }

    [Fact]
    public void EvalLoaderWithFuncTransformAndDropLast()
    {
        var items = Items();
        var pre = Preprocess.ImageNet(8, 0.875);
        using var loader = new BatchLoader(items, 3, 8, 8, (i, img) =>
        {
            var f = new float[pre.SampleLength];
            pre.Normalize(pre.Eval(img), f);
            return f;
        }, workers: 3, prefetch: 2, dropLast: true);
        var batches = Collect(loader);
        Assert.Equal(3, loader.BatchCount);
        Assert.Equal(3, batches.Count);
        Assert.Equal(Enumerable.Range(0, 9), batches.SelectMany(b => b.Indices));
        Assert.True(loader.WaitedTime >= TimeSpan.Zero);
    }

    [Fact]
    public void DecodeErrorSurfacesWithPathAtItsBatch()
    {
        var items = Items();
        items.Insert(5, new ImageItem(Fixtures.Src("text.jpg"), "text.jpg", -1));
        using var loader = BatchLoader.ForPreprocess(items, 4, Preprocess.ImageNet(8), workers: 2);
        int seen = 0;
        var e = Assert.Throws<ImageDecodeException>(() =>
        {
            foreach (var b in loader.GetBatches()) using (b) seen++;
        });
        Assert.Equal(1, seen); // the first batch (items 0..3) arrives; the second holds the bad file
        Assert.Contains("text.jpg", e.Message);
    }

    [Fact]
    public void EarlyExitAndCancellationStopWorkers()
    {
        var items = Enumerable.Repeat(Items()[9], 200).ToList();
        using var loader = BatchLoader.ForPreprocess(items, 2, Preprocess.ImageNet(8), workers: 4, prefetch: 2);
        foreach (var b in loader.GetBatches()) { b.Dispose(); break; }
        using var cts = new CancellationTokenSource();
        int n = 0;
        Assert.ThrowsAny<OperationCanceledException>(() =>
        {
            foreach (var b in loader.GetBatches(cts.Token)) { b.Dispose(); if (++n == 3) cts.Cancel(); }
        });
        Assert.Equal(3, n);
    }

    [Fact]
    public void SampleRandomDependsOnEveryPart()
    {
        int V(int s, int e, int i) => BatchLoader.SampleRandom(s, e, i).Next();
        Assert.Equal(V(1, 2, 3), V(1, 2, 3));
        Assert.NotEqual(V(1, 2, 3), V(1, 2, 4));
        Assert.NotEqual(V(1, 2, 3), V(1, 3, 3));
        Assert.NotEqual(V(1, 2, 3), V(2, 2, 3));
        Assert.NotEqual(V(0, 0, 1), V(0, 1, 0));
    }
}

public class BatchTensorTests
{
    [Fact]
    public void BatchTensorOutlivesLoaderAndGc()
    {
        var items = new[] { new ImageItem(Fixtures.Src("rgb.png"), "rgb.png", -1) };
        var pre = Preprocess.ImageNet(8);
        Batch batch;
        using (var loader = BatchLoader.ForPreprocess(items, 1, pre, workers: 1))
            batch = loader.GetBatches().Single();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        using (batch)
        {
            var expected = new float[pre.SampleLength];
            pre.Normalize(pre.Eval(ImageDecoder.Decode(items[0].Path)), expected);
            Assert.Equal(new long[] { 1, 3, 8, 8 }, batch.Images.shape);
            Assert.Equal(TorchSharp.torch.ScalarType.Float32, batch.Images.dtype);
            Assert.Equal(expected, batch.Images.data<float>().ToArray());
        }
    }
}
