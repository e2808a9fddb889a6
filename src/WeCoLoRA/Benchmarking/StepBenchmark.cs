using System.Diagnostics;
using TorchSharp;
using WeCoLoRA.Data;
using WeCoLoRA.Distillation;
using WeCoLoRA.Models;
using static TorchSharp.torch;
using WeCoLoRA.Runtime;

namespace WeCoLoRA.Benchmarking;

/// <summary>Milliseconds of one step, by phase.</summary>
public sealed record StepTimes(double Data, double TeacherForward, double StudentForward, double Backward, double Optimizer)
{
    public double Total => Data + TeacherForward + StudentForward + Backward + Optimizer;
}

/// <summary>
/// Times the real WeCoLoRA distillation step (<see cref="DistillationObjective"/> halves, the student and AdamW of
/// <see cref="Distiller"/>) on a random-weight teacher of a timm preset, as the peer benchmark does.
/// </summary>
public static class StepBenchmark
{
    public static BenchResult Run(BenchOptions options, Action<string>? progress = null)
    {
        var o = options.Validate();
        NativeHeap.RetainFreedMemory();
        int threads = o.ResolvedThreads;
        torch.set_num_threads(threads);

        var config = VitPresets.Get(o.Model);
        var settings = new DistillSettings
        {
            Teacher = o.Model, Data = o.Data ?? "", Out = "", R = o.R, Rank = o.Rank, BatchSize = o.Batch,
            Precision = o.Precision, Seed = o.Seed, Workers = o.Workers,
        }.Validate();
        manual_seed(o.Seed);
        var teacher = new VisionTransformer(config);
        foreach (var p in teacher.parameters()) p.requires_grad = false;
        var student = Distiller.BuildStudent(teacher, settings, forTraining: true);
        if (o.Precision == Precision.Bf16) teacher.to(bfloat16);
        teacher.eval();
        student.train();
        var keep = Distiller.KeptBlocks(settings, config.Depth);
        var trainable = student.named_parameters().Where(p => p.parameter.requires_grad).ToList();
        using var optimizer = Distiller.CreateOptimizer(trainable, settings);
        int lanes = TorchLanes.Resolve(o.Lanes, threads, o.Batch);
        using var laneThreads = TorchLanes.Create(lanes, threads);
        var objective = new DistillationObjective(teacher, student, settings.Method, settings.Align, keep, laneThreads);
        var flops = FlopCounter.Count(config, keep.Length, Distiller.AdapterSpec(settings), o.Batch);

        using var batches = new BatchSource(o, config);
        var times = new List<StepTimes>();
        var rss = new List<double>();
        double lastLoss = double.NaN;
        long? faultsAtStart = null;
        for (int i = 0; i < o.Warmup + o.Steps; i++)
        {
            if (i == o.Warmup) faultsAtStart = SystemStats.MinorFaults();
            long t0 = Stopwatch.GetTimestamp();
            using var images = batches.Next();
            long t1 = Stopwatch.GetTimestamp();
            var step = objective.Step(images);
            lastLoss = step.Loss;
            long t4 = Stopwatch.GetTimestamp();
            using (var scope = NewDisposeScope())
            {
                optimizer.step();
                optimizer.zero_grad();
            }
            long t5 = Stopwatch.GetTimestamp();
            if (i >= o.Warmup)
                times.Add(new StepTimes(Ms(t0, t1) - batches.TakeUnwaited(), step.TeacherMs, step.StudentMs, step.BackwardMs, Ms(t4, t5)));
            rss.Add(SystemStats.RssMb() ?? double.NaN);
            progress?.Invoke($"step {i + 1}/{o.Warmup + o.Steps}{(i < o.Warmup ? " (warm-up)" : "")}: {Ms(t0, Stopwatch.GetTimestamp()):F0} ms, loss {lastLoss:G4}");
        }
        // Peak RSS is the step's: read it before the peak matmuls. The peak is measured right after the steps, so that on a
        // shared machine it sees the load the steps saw (a peak measured at another time makes MFU meaningless).
        double? peakRss = SystemStats.PeakRssMb();
        double? faultsPerStep = (SystemStats.MinorFaults() - faultsAtStart) / (double)o.Steps;
        double? load = SystemStats.Load1();
        double? peakFp32 = null, peakBf16 = null;
        if (o.MeasurePeak)
        {
            progress?.Invoke($"matmul peak ({o.PeakSize}²) ...");
            peakFp32 = MatmulPeak.Measure(ScalarType.Float32, o.PeakSize);
            peakBf16 = MatmulPeak.Measure(ScalarType.BFloat16, o.PeakSize);
        }
        return new BenchResult(o, threads, lanes, keep.Length, times, flops, peakFp32, peakBf16, peakRss, rss, faultsPerStep, lastLoss, load);
    }

    static double Ms(long from, long to) => Stopwatch.GetElapsedTime(from, to).TotalMilliseconds;

    /// <summary>
    /// One random batch drawn once and reused, as the peer does (so the data phase is empty, not a randn), or a real image
    /// folder through the training loader (with augmentation), cycling epochs.
    /// </summary>
    sealed class BatchSource : IDisposable
    {
        readonly BenchOptions o;
        readonly VitConfig config;
        readonly IReadOnlyList<ImageItem>? items;
        Tensor? random;
        BatchLoader? loader;
        IEnumerator<Batch>? batches;
        int epoch;
        double unwaitedMs;

        public BatchSource(BenchOptions o, VitConfig config)
        {
            this.o = o;
            this.config = config;
            if (o.Data is not null)
            {
                items = DatasetSource.OpenUnlabeled(o.Data);
                if (items.Count < o.Batch) throw new ArgumentException($"--data {o.Data} holds {items.Count} images, fewer than --batch {o.Batch}");
            }
        }

        /// <summary>
        /// With a loader, the part of the last <see cref="Next"/> call that was not spent waiting for a batch (handing the
        /// batch over, starting an epoch's workers); the data phase reports only the wait.
        /// </summary>
        public double TakeUnwaited()
        {
            var u = unwaitedMs;
            unwaitedMs = 0;
            return u;
        }

        public Tensor Next()
        {
            if (items is null)
            {
                random ??= randn(o.Batch, config.InChans, config.ImgSize, config.ImgSize).DetachFromDisposeScope();
                return random.alias(); // the caller disposes its handle, not the batch
            }
            long t = Stopwatch.GetTimestamp();
            double waitedBefore = loader?.WaitedTime.TotalMilliseconds ?? 0;
            if (batches is null || !batches.MoveNext())
            {
                batches?.Dispose();
                loader?.Dispose();
                loader = BatchLoader.ForPreprocess(items, o.Batch, ModelPreprocess.For(config), trainSeed: o.Seed, epoch: epoch++, workers: o.Workers, dropLast: true);
                waitedBefore = 0;
                batches = loader.GetBatches().GetEnumerator();
                if (!batches.MoveNext()) throw new ArgumentException($"--data {o.Data}: no full batch of {o.Batch}");
            }
            var batch = batches.Current;
            double waited = loader!.WaitedTime.TotalMilliseconds - waitedBefore;
            unwaitedMs = Math.Max(0, Ms(t, Stopwatch.GetTimestamp()) - waited);
            // The loader's tensor is owned by the batch; hand out the tensor and let the caller dispose it.
            return batch.Images;
        }

        public void Dispose()
        {
            random?.Dispose();
            batches?.Dispose();
            loader?.Dispose();
        }
    }
}
