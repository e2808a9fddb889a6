using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.Modules;
using WeCoLoRA.Checkpoints;
using WeCoLoRA.Data;
using WeCoLoRA.Lora;
using WeCoLoRA.Models;
using WeCoLoRA.Optimization;
using static TorchSharp.torch;
using WeCoLoRA.Runtime;

namespace WeCoLoRA.Distillation;

/// <summary>A run cannot go on (non-finite loss, a resume that does not match); the message says why and what was kept.</summary>
public sealed class DistillationException(string message) : Exception(message);

/// <summary>The run stopped on request after writing <see cref="Checkpoint"/>; <c>--resume</c> continues it.</summary>
public sealed class RunInterruptedException(string checkpoint) : Exception($"interrupted; checkpoint written to {checkpoint}")
{
    public string Checkpoint { get; } = checkpoint;
}

/// <summary>What a run reports while it goes.</summary>
public interface IDistillObserver
{
    void OnStart(int epochs, int stepsPerEpoch, int startEpoch, int images);
    void OnStep(StepMetrics metrics);
    void OnCheckpoint(CheckpointState state, string path);
    void OnNote(string message);
}

/// <summary>The WeCoLoRA training loop and its baselines (METHOD.md), writing a run folder.</summary>
public sealed class Distiller
{
    readonly DistillSettings s;
    readonly RunFolder run;
    readonly IDistillObserver? observer;

    public Distiller(DistillSettings settings, IDistillObserver? observer = null)
    {
        s = settings.Validate();
        run = new RunFolder(settings.Out);
        this.observer = observer;
    }

    /// <summary>The LoRA layout of a method, or null when it trains no adapters.</summary>
    public static LoraSpec? AdapterSpec(DistillSettings s) => s.Method switch
    {
        DistillMethod.WeCoLoRA => new LoraSpec(LoraSpec.ParseTargets(s.Targets), s.Rank, s.Alpha ?? s.Rank),
        DistillMethod.LoraQv => new LoraSpec(LoraSpec.ParseTargets("qv"), s.Rank, s.Alpha ?? s.Rank),
        _ => null,
    };

    /// <summary>The few-shot subset without the files that do not decode (each reported); no class may end empty.</summary>
    IReadOnlyList<ImageItem> UsableSubset()
    {
        var subset = FewShotSubset.Select(s.Data, s.Ratio, s.Seed);
        var scan = ImageScan.Check(subset, s.Strict, s.MaxPixels, w => observer?.OnNote(w), s.Workers);
        if (scan.Skipped.Count == 0) return scan.Usable;
        observer?.OnNote($"{scan.Skipped.Count} of {subset.Count} images skipped (--strict makes the first one fatal)");
        var emptied = subset.Select(FewShotSubset.GroupOf).Distinct().Except(scan.Usable.Select(FewShotSubset.GroupOf)).ToList();
        if (emptied.Count > 0)
            throw new DistillationException($"class folder '{emptied[0]}' has no usable image in the --ratio {s.Ratio} subset; fix or remove its files, or raise --ratio");
        return scan.Usable;
    }

    /// <summary>Teacher blocks kept in the student.</summary>
    public static int[] KeptBlocks(DistillSettings s, int teacherDepth) =>
        s.Keep is { } keep ? WeightCopy.ParseKeep(string.Join(",", keep), teacherDepth) : WeightCopy.EveryRth(teacherDepth, s.R);

    /// <summary>
    /// The student at step 0: copied (or randomly initialised) blocks, with adapters when the method has them.
    /// In bf16 runs of the LoRA methods the frozen weights are cast before the fp32 adapters are added.
    /// </summary>
    public static VisionTransformer BuildStudent(VisionTransformer teacher, DistillSettings s, bool forTraining = false)
    {
        var keep = KeptBlocks(s, teacher.Config.Depth);
        VisionTransformer student;
        if (s.Method == DistillMethod.KdScratch)
        {
            student = new VisionTransformer(teacher.Config with { Depth = keep.Length });
            WeightCopy.InitFromScratch(student, s.Seed);
        }
        else
        {
            student = WeightCopy.CreateStudent(teacher, keep);
        }
        if (AdapterSpec(s) is { } spec)
        {
            if (forTraining && s.Precision == Precision.Bf16) student.to(bfloat16);
            spec.Inject(student, new Generator((ulong)s.Seed));
        }
        else if (s.Method == DistillMethod.Weco) foreach (var p in student.parameters()) p.requires_grad = false;
        return student;
    }

    /// <summary>
    /// Runs (or resumes) the distillation; returns the student folder. When <paramref name="interrupt"/> fires, the
    /// current optimizer step finishes, a checkpoint is written and <see cref="RunInterruptedException"/> is thrown.
    /// </summary>
    public string Run(bool resume = false, bool overwrite = false, CancellationToken interrupt = default)
    {
        NativeHeap.RetainFreedMemory();
        var teacherLoaded = ModelLoader.Load(s.Teacher);
        var teacher = teacherLoaded.Model;
        foreach (var note in teacherLoaded.Notes) observer?.OnNote($"teacher: {note}");
        var keep = KeptBlocks(s, teacher.Config.Depth);
        var items = UsableSubset();
        var settingsJson = JsonSerializer.SerializeToNode(s, DistillSettings.Json)!.AsObject();

        CheckpointState start = new(0, 0, 0);
        string? checkpoint = null;
        if (resume && run.HoldsRun)
        {
            run.CheckSameSettings(settingsJson, "workers", "teacher_cache", "lanes");
            if (File.Exists(run.SubsetPath) && !File.ReadAllLines(run.SubsetPath).SequenceEqual(items.Select(i => i.RelativePath)))
                throw new DistillationException($"--resume: the images in {s.Data} differ from the run's {run.SubsetPath}; resume on the same data or start a new --out");
            checkpoint = run.LatestCheckpoint();
            if (checkpoint is not null) start = RunFolder.ReadState(checkpoint);
            run.TruncateMetrics(start.Step);
            observer?.OnNote(checkpoint is null ? "no checkpoint yet: starting from step 0" : $"resuming at epoch {start.Epoch + 1}, batch {start.BatchesDone} (step {start.Step}) from {checkpoint}");
        }
        else
        {
            run.Create(overwrite);
            run.WriteText(run.SubsetPath, string.Concat(items.Select(i => i.RelativePath + "\n")));
        }

        var student = BuildStudent(teacher, s, forTraining: true);
        if (s.Precision == Precision.Bf16) teacher.to(bfloat16);
        var spec = AdapterSpec(s);
        var trainable = student.named_parameters().Where(p => p.parameter.requires_grad).ToList();
        int stepsPerEpoch = (int)Math.Ceiling((double)items.Count / s.BatchSize / s.AccumIter);
        int threads = get_num_threads(), laneCount = TorchLanes.Resolve(s.Lanes, threads, s.BatchSize);
        run.WriteText(run.ConfigPath, new JsonObject
        {
            ["settings"] = settingsJson,
            ["teacher"] = ConfigFiles.ToTimmJson(teacher.Config),
            ["teacher_weights"] = teacherLoaded.WeightsPath,
            ["kept_blocks"] = new JsonArray([.. keep.Select(k => (JsonNode)k)]),
            ["student_depth"] = keep.Length,
            ["images"] = items.Count,
            ["lr"] = s.AbsoluteLr,
            ["steps_per_epoch"] = stepsPerEpoch,
            ["trainable_params"] = trainable.Sum(p => p.parameter.numel()),
            ["threads"] = threads,
            ["lanes"] = laneCount,
        }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));

        bool trains = s.Method != DistillMethod.Weco && s.Epochs > 0;
        if (trains)
        {
            using var optimizer = CreateOptimizer(trainable, s);
            if (checkpoint is not null) Restore(checkpoint, student, optimizer);
            Train(teacher, student, trainable, optimizer, items, keep, start, stepsPerEpoch, (laneCount, threads), interrupt);
            if (s.Precision == Precision.Bf16 && spec is not null) student = Rebuild(student); // save fp32 base weights, not bf16-rounded ones
        }
        ModelFiles.Save(student, run.StudentDir, spec, new Dictionary<string, string> { ["wecolora.method"] = JsonSerializer.Serialize(s.Method, DistillSettings.Json).Trim('"') });
        return run.StudentDir;
    }

    /// <summary>AdamW with the release's groups: weight decay on matrices only (not biases, norms, tokens or position embedding).</summary>
    public static OptimizerHelper CreateOptimizer(IReadOnlyList<(string name, Parameter parameter)> trainable, DistillSettings s) =>
        AdamWGroups.Create(trainable, s.AbsoluteLr, s.WeightDecay, beta1: 0.9, beta2: 0.95);

    static void Restore(string checkpoint, VisionTransformer student, OptimizerHelper optimizer)
    {
        var saved = RunFolder.ReadTrainable(checkpoint);
        try
        {
            ModelLoader.LoadStrict(student, saved, Path.Combine(checkpoint, "trainable.safetensors"), saved.ContainsKey);
        }
        finally
        {
            foreach (var t in saved.Values) t.Dispose();
        }
        optimizer.load_state_dict(Path.Combine(checkpoint, "optimizer.bin"));
    }

    /// <summary>A fp32 student from a freshly loaded teacher, carrying the trained values of <paramref name="trained"/>.</summary>
    VisionTransformer Rebuild(VisionTransformer trained)
    {
        var fresh = BuildStudent(ModelLoader.Load(s.Teacher).Model, s);
        var values = trained.named_parameters().Where(p => p.parameter.requires_grad).ToDictionary(p => p.name, p => (Tensor)p.parameter);
        ModelLoader.LoadStrict(fresh, values, "trained student", values.ContainsKey);
        return fresh;
    }

    /// <summary>
    /// A cache of teacher targets when the inputs repeat every epoch (--no-augment) and more than one epoch is left;
    /// a resumed run starts it empty.
    /// </summary>
    TeacherCache? CreateTeacherCache(VisionTransformer teacher, int images, int startEpoch)
    {
        if (!s.NoAugment || s.TeacherCache == TeacherCacheMode.Off || s.Epochs - startEpoch < 2) return null;
        var cache = new TeacherCache(images, teacher.Config.Depth, teacher.pos_embed.shape[1], teacher.Config.EmbedDim, s.Align == Alignment.Blocks,
            teacher.pos_embed.dtype, s.TeacherCache, Path.Combine(run.Root, "teacher-cache.bin"));
        observer?.OnNote($"teacher cache: {cache.Bytes / (1024.0 * 1024.0):F0} MiB {(cache.FilePath is null ? "in memory" : $"memory-mapped at {cache.FilePath}")}; the teacher runs once per image");
        return cache;
    }

    void Train(VisionTransformer teacher, VisionTransformer student, List<(string name, Parameter parameter)> trainable, OptimizerHelper optimizer,
        IReadOnlyList<ImageItem> items, int[] keep, CheckpointState start, int stepsPerEpoch, (int Count, int Threads) lanes, CancellationToken interrupt)
    {
        var preprocess = ModelPreprocess.For(teacher.Config);
        int batchesPerEpoch = (int)Math.Ceiling((double)items.Count / s.BatchSize);
        using var laneThreads = TorchLanes.Create(lanes.Count, lanes.Threads);
        var objective = new DistillationObjective(teacher, student, s.Method, s.Align, keep, laneThreads);
        teacher.eval();
        student.train();
        observer?.OnStart(s.Epochs, stepsPerEpoch, start.Epoch, items.Count);
        using var cache = CreateTeacherCache(teacher, items.Count, start.Epoch);
        long step = start.Step;
        string Save(int epoch, int batchesDone)
        {
            var state = batchesDone == batchesPerEpoch ? new CheckpointState(epoch + 1, 0, step) : new CheckpointState(epoch, batchesDone, step);
            var path = run.SaveCheckpoint(state, trainable.Select(p => (p.name, (Tensor)p.parameter)), optimizer);
            observer?.OnCheckpoint(state, path);
            return path;
        }
        for (int epoch = start.Epoch; epoch < s.Epochs; epoch++)
        {
            // The epoch's order and every sample's augmentation depend only on (seed, epoch, index): a resumed run
            // skips the batches already done and sees exactly what an uninterrupted run would.
            var order = Enumerable.Range(0, items.Count).ToArray();
            BatchLoader.SampleRandom(s.Seed, epoch, -1).Shuffle(order); // not HashCode.Combine: it is randomized per process, a resumed process would see other batches
            int batchIndex = epoch == start.Epoch ? start.BatchesDone : 0;
            using var loader = BatchLoader.ForPreprocess(items, s.BatchSize, preprocess, s.NoAugment ? null : s.Seed, epoch,
                order[Math.Min(order.Length, batchIndex * s.BatchSize)..], s.Workers, maxPixels: s.MaxPixels);
            int inGroup = 0, groupImages = 0;
            double groupLoss = 0;
            var clock = Stopwatch.StartNew();
            foreach (var batch in loader.GetBatches())
            {
                using var _ = batch;
                if (inGroup == 0)
                {
                    double lr = LrSchedule.At(epoch + (double)batchIndex / batchesPerEpoch, s.AbsoluteLr, s.WarmupEpochs, s.Epochs, s.MinLr);
                    foreach (var g in optimizer.ParamGroups) g.LearningRate = lr;
                }
                double loss = objective.Step(batch.Images, s.AccumIter, cache, batch.Indices).Loss;
                if (!double.IsFinite(loss))
                    throw new DistillationException(
                        $"loss is {loss} at step {step + 1} (epoch {epoch}); batch files: {string.Join(", ", batch.Indices.Take(8).Select(i => items[i].RelativePath))}; " +
                        $"the last good checkpoint is kept in {run.CheckpointsDir} (try a lower --blr or --precision fp32)");
                groupLoss += loss;
                groupImages += batch.Indices.Length;
                inGroup++;
                batchIndex++;
                if (inGroup == s.AccumIter || batchIndex == batchesPerEpoch)
                {
                    optimizer.step();
                    optimizer.zero_grad();
                    step++;
                    var m = new StepMetrics(epoch, step, groupLoss / inGroup, optimizer.ParamGroups.First().LearningRate,
                        groupImages / clock.Elapsed.TotalSeconds, Environment.WorkingSet / (1024.0 * 1024.0));
                    run.AppendMetrics(m);
                    observer?.OnStep(m);
                    (inGroup, groupLoss, groupImages) = (0, 0, 0);
                    clock.Restart();
                    // An interrupt (SIGINT/SIGTERM) lets the step finish, then checkpoints where the run stands.
                    if (interrupt.IsCancellationRequested && batchIndex < batchesPerEpoch)
                        throw new RunInterruptedException(Save(epoch, batchIndex));
                }
            }
            var path = Save(epoch, batchesPerEpoch);
            if (interrupt.IsCancellationRequested && epoch + 1 < s.Epochs) throw new RunInterruptedException(path);
        }
        if (cache is not null) observer?.OnNote($"teacher cache: {cache.Hits} of {cache.Hits + cache.Misses} targets reused");
    }
}
