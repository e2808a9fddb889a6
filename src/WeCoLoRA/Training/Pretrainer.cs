using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.Modules;
using WeCoLoRA.Checkpoints;
using WeCoLoRA.Data;
using WeCoLoRA.Distillation;
using WeCoLoRA.Models;
using WeCoLoRA.Optimization;
using static TorchSharp.torch;
using WeCoLoRA.Runtime;

namespace WeCoLoRA.Training;

/// <summary>What a supervised run produced.</summary>
public sealed record PretrainResult(string ModelDir, int Images, double? TestAccuracy, int TestImages, TimeSpan Elapsed);

/// <summary>
/// Supervised training of a ViT on a labelled dataset, from timm's random init or from a checkpoint: AdamW, cross-entropy
/// with label smoothing, per-iteration warm-up + cosine, RandomResizedCrop/flip or pad-crop/flip, per-epoch checkpoints
/// and resume in a <see cref="RunFolder"/> (model/ holds the result), progress through an <see cref="IDistillObserver"/>.
/// </summary>
public sealed class Pretrainer
{
    readonly PretrainSettings s;
    readonly RunFolder run;
    readonly IDistillObserver? observer;

    public Pretrainer(PretrainSettings settings, IDistillObserver? observer = null)
    {
        s = settings.Validate();
        run = new RunFolder(settings.Out, "model");
        this.observer = observer;
    }

    public RunFolder Folder => run;

    public PretrainResult Run(bool resume = false, bool overwrite = false, CancellationToken ct = default)
    {
        NativeHeap.RetainFreedMemory();
        var total = Stopwatch.StartNew();
        var train = DatasetSource.Open(s.Data).Take(s.Limit);
        if (train.Items.Count == 0) throw new DataException($"--data {s.Data} holds no images");
        var settingsJson = JsonSerializer.SerializeToNode(s, PretrainSettings.Json)!.AsObject();

        CheckpointState start = new(0, 0, 0);
        string? checkpoint = null;
        if (resume && run.HoldsRun)
        {
            run.CheckSameSettings(settingsJson, "workers", "test");
            checkpoint = run.LatestCheckpoint();
            if (checkpoint is not null) start = RunFolder.ReadState(checkpoint);
            run.TruncateMetrics(start.Step);
            observer?.OnNote(checkpoint is null ? "no checkpoint yet: starting from step 0" : $"resuming after epoch {start.Epoch} (step {start.Step}) from {checkpoint}");
        }
        else
        {
            run.Create(overwrite);
        }

        var model = BuildModel(train);
        var parameters = model.named_parameters().Select(p => (p.name, p.parameter)).ToList();
        int stepsPerEpoch = (int)Math.Ceiling((double)train.Items.Count / s.BatchSize);
        run.WriteText(run.ConfigPath, new JsonObject
        {
            ["settings"] = settingsJson,
            ["model"] = ConfigFiles.ToTimmJson(model.Config),
            ["classes"] = new JsonArray([.. train.Classes.Select(c => (JsonNode)JsonValue.Create(c))]),
            ["images"] = train.Items.Count,
            ["lr"] = s.AbsoluteLr,
            ["steps_per_epoch"] = stepsPerEpoch,
            ["params"] = parameters.Sum(p => p.parameter.numel()),
        }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));

        using (var optimizer = AdamWGroups.Create(parameters, s.AbsoluteLr, s.WeightDecay, beta1: 0.9, beta2: s.Beta2))
        {
            if (checkpoint is not null) Restore(checkpoint, model, optimizer);
            Train(model, parameters, optimizer, train.Items, start, stepsPerEpoch, ct);
        }
        ModelFiles.Save(model, run.ModelDir, metadata: new Dictionary<string, string> { ["wecolora.trained"] = "supervised" });
        WriteLabelNames(Path.Combine(run.ModelDir, ModelFiles.Config), train.Classes);

        double? accuracy = null;
        int testImages = 0;
        if (s.Test is not null)
        {
            var test = DatasetSource.Open(s.Test).RelabelTo(train.Classes, "--test");
            testImages = test.Items.Count;
            accuracy = Accuracy(model, test.Items, s.BatchSize, s.Workers, ct);
            observer?.OnNote($"test accuracy {accuracy:P2} on {testImages} images");
        }
        var result = new PretrainResult(run.ModelDir, train.Items.Count, accuracy, testImages, total.Elapsed);
        run.WriteText(Path.Combine(run.Root, "results.json"), new JsonObject
        {
            ["test"] = s.Test,
            ["test_accuracy"] = accuracy,
            ["test_images"] = testImages,
            ["train_images"] = train.Items.Count,
            ["seconds"] = Math.Round(total.Elapsed.TotalSeconds, 1),
        }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        return result;
    }

    /// <summary>Adds timm's pretrained_cfg.label_names so that predict/probe can name the classes.</summary>
    static void WriteLabelNames(string configPath, IReadOnlyList<string> classes)
    {
        var root = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        root["pretrained_cfg"]!["label_names"] = new JsonArray([.. classes.Select(c => (JsonNode)JsonValue.Create(c))]);
        var tmp = configPath + ".tmp";
        File.WriteAllText(tmp, root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        File.Move(tmp, configPath, overwrite: true);
    }

    VisionTransformer BuildModel(Dataset train)
    {
        int classes = train.Classes.Count;
        if (s.Init is not null)
        {
            var loaded = ModelLoader.Load(s.Init);
            foreach (var note in loaded.Notes) observer?.OnNote($"init: {note}");
            var cfg = loaded.Config with { NumClasses = classes };
            if (s.Mean is not null) cfg = cfg with { Mean = [.. s.Mean], Std = [.. s.Std ?? [.. cfg.Std]] };
            var model = new VisionTransformer(cfg.Validate());
            bool sameHead = loaded.Config.NumClasses == classes;
            if (!sameHead) observer?.OnNote($"init: head replaced ({loaded.Config.NumClasses} -> {classes} classes)");
            bool Copied(string key) => sameHead || !key.StartsWith("head.", StringComparison.Ordinal);
            var sd = loaded.Model.state_dict().Where(kv => Copied(kv.Key)).ToDictionary();
            ModelLoader.LoadStrict(model, sd, loaded.WeightsPath, Copied);
            if (!sameHead && model.head is Linear head) SeededInit.ResetParameters(head.weight!, head.bias, new Generator((ulong)s.Seed));
            return model;
        }
        var arch = s.Architecture();
        if (arch.InChans != 3) throw new ArgumentException($"in_chans {arch.InChans}: images are loaded as RGB, so in_chans must be 3");
        var (mean, std) = s.Mean is not null && s.Std is not null ? (s.Mean, s.Std) : MeasureMeanStd(train.Items);
        arch = arch with
        {
            NumClasses = classes,
            Mean = [.. Broadcast(mean, 3)],
            Std = [.. Broadcast(std, 3)],
            CropPct = s.CropPadding is not null ? 1.0 : arch.CropPct,
        };
        var scratch = new VisionTransformer(arch.Validate());
        WeightCopy.InitFromScratch(scratch, s.Seed);
        return scratch;
    }

    static float[] Broadcast(float[] v, int n) => v.Length == n ? v : v.Length == 1 ? [.. Enumerable.Repeat(v[0], n)]
        : throw new ArgumentException($"--mean/--std need 1 or {n} values, got {v.Length}");

    /// <summary>Per-channel mean and std of pixel values in [0, 1] over up to 10,000 evenly spaced training images (4 decimals).</summary>
    public static (float[] Mean, float[] Std) MeasureMeanStd(IReadOnlyList<ImageItem> items)
    {
        var sample = DatasetSource.Subset(items, Math.Min(items.Count, 10_000));
        var sum = new double[3];
        var sq = new double[3];
        long n = 0;
        foreach (var item in sample)
        {
            var px = item.Load().Pixels;
            for (int i = 0; i < px.Length; i += 3)
                for (int c = 0; c < 3; c++)
                {
                    double v = px[i + c] / 255.0;
                    sum[c] += v;
                    sq[c] += v * v;
                }
            n += px.Length / 3;
        }
        var mean = sum.Select(v => (float)Math.Round(v / n, 4)).ToArray();
        var std = sq.Select((v, c) => (float)Math.Round(Math.Sqrt(Math.Max(v / n - sum[c] / n * (sum[c] / n), 1e-12)), 4)).ToArray();
        return (mean, std);
    }

    static void Restore(string checkpoint, VisionTransformer model, OptimizerHelper optimizer)
    {
        var saved = RunFolder.ReadTrainable(checkpoint);
        try
        {
            ModelLoader.LoadStrict(model, saved, Path.Combine(checkpoint, "trainable.safetensors"));
        }
        finally
        {
            foreach (var t in saved.Values) t.Dispose();
        }
        optimizer.load_state_dict(Path.Combine(checkpoint, "optimizer.bin"));
    }

    /// <summary>The sample transform of the run: pad-crop + flip or RandomResizedCrop + flip, seeded per (seed, epoch, item).</summary>
    SampleTransform TrainTransform(Preprocess preprocess, int epoch) => s.CropPadding is int pad
        ? (i, img, dst) => preprocess.Normalize(preprocess.PadCropFlip(img, pad, BatchLoader.SampleRandom(s.Seed, epoch, i)), dst)
        : (i, img, dst) => preprocess.Normalize(preprocess.Train(img, BatchLoader.SampleRandom(s.Seed, epoch, i)), dst);

    /// <summary>The epoch's order: a shuffle seeded by (seed, epoch) alone, so a resumed process sees the same batches.</summary>
    public static int[] EpochOrder(int count, int seed, int epoch)
    {
        var order = Enumerable.Range(0, count).ToArray();
        BatchLoader.SampleRandom(seed, epoch, -1).Shuffle(order);
        return order;
    }

    void Train(VisionTransformer model, List<(string name, Parameter parameter)> parameters, OptimizerHelper optimizer,
        IReadOnlyList<ImageItem> items, CheckpointState start, int stepsPerEpoch, CancellationToken ct)
    {
        var preprocess = ModelPreprocess.For(model.Config);
        model.train();
        observer?.OnStart(s.Epochs, stepsPerEpoch, start.Epoch, items.Count);
        long step = start.Step;
        for (int epoch = start.Epoch; epoch < s.Epochs; epoch++) // checkpoints fall on epoch ends, so BatchesDone is 0
        {
            var order = EpochOrder(items.Count, s.Seed, epoch);
            using var loader = new BatchLoader(items, s.BatchSize, preprocess.ImgSize, preprocess.ImgSize, TrainTransform(preprocess, epoch), order, s.Workers);
            int batchIndex = 0;
            var clock = Stopwatch.StartNew();
            foreach (var batch in loader.GetBatches(ct))
            {
                using var _ = batch;
                using var scope = NewDisposeScope();
                double lr = LrSchedule.At(epoch + (double)batchIndex / stepsPerEpoch, s.AbsoluteLr, s.WarmupEpochs, s.Epochs, s.MinLr);
                foreach (var g in optimizer.ParamGroups) g.LearningRate = lr;
                var labels = tensor(batch.Indices.Select(i => (long)items[i].Label).ToArray());
                var logits = model.call(batch.Images);
                var loss = nn.functional.cross_entropy(logits, labels, label_smoothing: s.LabelSmoothing);
                double value = loss.item<float>();
                if (!double.IsFinite(value))
                    throw new DistillationException($"loss is {value} at step {step + 1} (epoch {epoch}); the last good checkpoint is kept in {run.CheckpointsDir} (try a lower --blr)");
                optimizer.zero_grad();
                loss.backward();
                optimizer.step();
                step++;
                batchIndex++;
                var m = new StepMetrics(epoch, step, value, lr, batch.Indices.Length / clock.Elapsed.TotalSeconds, Environment.WorkingSet / (1024.0 * 1024.0));
                run.AppendMetrics(m);
                observer?.OnStep(m);
                clock.Restart();
            }
            var state = new CheckpointState(epoch + 1, 0, step);
            var path = run.SaveCheckpoint(state, parameters.Select(p => (p.name, (Tensor)p.parameter)), optimizer);
            observer?.OnCheckpoint(state, path);
        }
        model.eval();
    }

    /// <summary>Top-1 accuracy of a classifier on labelled items with the model's eval preprocessing.</summary>
    public static double Accuracy(VisionTransformer model, IReadOnlyList<ImageItem> items, int batchSize = 256, int workers = 0, CancellationToken ct = default)
    {
        if (!model.HasHead) throw new ArgumentException("the model has no classification head");
        model.eval();
        using var loader = BatchLoader.ForPreprocess(items, batchSize, ModelPreprocess.For(model.Config), workers: workers);
        long correct = 0;
        using var noGrad = no_grad();
        foreach (var batch in loader.GetBatches(ct))
        {
            using var _ = batch;
            using var scope = NewDisposeScope();
            var predicted = model.call(batch.Images).argmax(1);
            var labels = tensor(batch.Indices.Select(i => (long)items[i].Label).ToArray());
            correct += predicted.eq(labels).sum().item<long>();
        }
        return items.Count == 0 ? 0 : (double)correct / items.Count;
    }
}
