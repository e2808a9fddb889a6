using System.Diagnostics;
using System.Text.Json.Nodes;
using WeCoLoRA.Checkpoints;
using WeCoLoRA.Data;
using WeCoLoRA.Distillation;
using WeCoLoRA.Evaluation;
using WeCoLoRA.Models;

namespace WeCoLoRA.Reproduction;

/// <summary>One distillation of the grid: everything that changes between cells.</summary>
public sealed record Cell(DistillMethod Method, double Ratio, int R, int Rank, double Lr, int Seed)
{
    public string Name => $"{MethodName(Method)}-a{Ratio * 100:0.###}-r{R}-rank{Rank}-lr{Lr:0.#####}-s{Seed}".Replace(',', '.');

    public static string MethodName(DistillMethod m) => m switch
    {
        DistillMethod.WeCoLoRA => "wecolora",
        DistillMethod.LoraQv => "lora-qv",
        DistillMethod.WecoKd => "weco-kd",
        DistillMethod.KdScratch => "kd-scratch",
        _ => "weco",
    };

    /// <summary>The paper's names for the table.</summary>
    public static string Label(DistillMethod m) => m switch
    {
        DistillMethod.WeCoLoRA => "WeCoLoRA (copy + enhanced LoRA)",
        DistillMethod.LoraQv => "WeCo + LoRA (q, v)",
        DistillMethod.WecoKd => "WeCo + KD",
        DistillMethod.KdScratch => "KD from scratch",
        _ => "WeCo only",
    };
}

/// <summary>Settings shared by every cell: the teacher, data, and the training and evaluation recipe.</summary>
public sealed record ExperimentSettings
{
    public required string Teacher { get; init; }
    /// <summary>Unlabelled distillation data (a DatasetSource spec); the few-shot subset is drawn from it per α.</summary>
    public required string Train { get; init; }
    public required string Test { get; init; }
    public required string Out { get; init; }
    public int Epochs { get; init; } = 5;
    public double WarmupEpochs { get; init; } = 1;
    public int BatchSize { get; init; } = 32;
    /// <summary>Labelled images for the probe's training (evenly spaced over the train set) and its test (over the test set).</summary>
    public int ProbeTrain { get; init; } = 1000;
    public int ProbeTest { get; init; } = 1000;
    /// <summary>The linear probe: MAE's head (BN + linear) and LARS, at a learning rate that moves on a few thousand features.</summary>
    public ProbeOptions Probe { get; init; } = new() { Epochs = 50, WarmupEpochs = 10, BatchSize = 128, BaseLr = 10 };
    public int KnnK { get; init; } = 20;
    public int Workers { get; init; }
}

/// <summary>A scored model: linear-probe and kNN top-1 (percent) on the same labelled sets.</summary>
public sealed record Score
{
    public required string Name { get; init; }
    public Cell? Cell { get; init; }
    public double Probe { get; init; }
    public double Knn { get; init; }
    public long Params { get; init; }
    public long TrainableParams { get; init; }
    public int Depth { get; init; }
    public double Seconds { get; init; }
    public int Images { get; init; }
    public double[] Losses { get; init; } = [];

    public JsonObject ToJson() => new()
    {
        ["name"] = Name,
        ["method"] = Cell is null ? "teacher" : Cell.MethodName(Cell.Method),
        ["ratio"] = Cell?.Ratio,
        ["r"] = Cell?.R,
        ["rank"] = Cell?.Rank,
        ["lr"] = Cell?.Lr,
        ["seed"] = Cell?.Seed,
        ["probe_top1"] = Math.Round(Probe, 2),
        ["knn_top1"] = Math.Round(Knn, 2),
        ["params"] = Params,
        ["trainable_params"] = TrainableParams,
        ["depth"] = Depth,
        ["seconds"] = double.IsNaN(Seconds) ? null : Math.Round(Seconds, 1),
        ["images"] = Images,
        ["losses"] = new JsonArray([.. Losses.Select(l => (JsonNode)JsonValue.Create(Math.Round(l, 6)))]),
    };
}

/// <summary>
/// Runs distillations with <see cref="Distiller"/> into OUT/runs/NAME and scores students and the teacher by a linear probe
/// and kNN on class-token features (final LayerNorm) of fixed, evenly spaced labelled train/test images.
/// A cell whose run folder already holds a student is scored without training again.
/// </summary>
public sealed class Experiment
{
    readonly ExperimentSettings s;
    readonly IReadOnlyList<ImageItem> probeTrain, probeTest;
    readonly int classes;
    readonly Action<string>? log;

    public Experiment(ExperimentSettings settings, Action<string>? log = null)
    {
        s = settings;
        this.log = log;
        var train = DatasetSource.Open(settings.Train);
        var test = DatasetSource.Open(settings.Test).RelabelTo(train.Classes, "test set");
        probeTrain = DatasetSource.Subset(train.Items, settings.ProbeTrain);
        probeTest = DatasetSource.Subset(test.Items, settings.ProbeTest);
        classes = train.Classes.Count;
    }

    public ExperimentSettings Settings => s;

    /// <summary>The teacher, scored as the reference row.</summary>
    public Score ScoreTeacher()
    {
        var clock = Stopwatch.StartNew();
        var teacher = ModelLoader.Load(s.Teacher).Model;
        var (probe, knn) = Evaluate(teacher);
        return new Score
        {
            Name = "Teacher",
            Probe = probe,
            Knn = knn,
            Params = Count(teacher.Config),
            Depth = teacher.Config.Depth,
            Seconds = clock.Elapsed.TotalSeconds,
        };
    }

    public DistillSettings DistillSettingsFor(Cell cell) => new()
    {
        Teacher = s.Teacher,
        Data = s.Train,
        Out = Path.Combine(s.Out, "runs", cell.Name),
        Method = cell.Method,
        Ratio = cell.Ratio,
        R = cell.R,
        Rank = cell.Rank,
        Epochs = cell.Method == DistillMethod.Weco ? 0 : s.Epochs,
        WarmupEpochs = s.WarmupEpochs,
        BatchSize = s.BatchSize,
        Lr = cell.Lr,
        Seed = cell.Seed,
        Workers = s.Workers,
    };

    /// <summary>Distills one cell (or reuses its finished run) and scores the student.</summary>
    public Score Run(Cell cell, IDistillObserver? observer = null, CancellationToken ct = default)
    {
        var settings = DistillSettingsFor(cell);
        var run = new RunFolder(settings.Out);
        var clock = Stopwatch.StartNew();
        bool done = File.Exists(Path.Combine(run.StudentDir, ModelFiles.Weights)) && run.HoldsRun;
        if (!done)
        {
            log?.Invoke($"{cell.Name}: distilling");
            new Distiller(settings, observer).Run(resume: run.HoldsRun, interrupt: ct);
        }
        else log?.Invoke($"{cell.Name}: already done, scoring");
        double trainSeconds = clock.Elapsed.TotalSeconds;
        var config = run.ReadConfig();
        var student = ModelLoader.Load(run.StudentDir).Model;
        // A finished cell keeps its scores (with the evaluation settings they were made with), so reruns skip the probe.
        var scorePath = Path.Combine(run.Root, "score.json");
        var evalKey = new JsonObject
        {
            ["probe"] = System.Text.Json.JsonSerializer.SerializeToNode(s.Probe, DistillSettings.Json),
            ["probe_train"] = s.ProbeTrain, ["probe_test"] = s.ProbeTest, ["knn_k"] = s.KnnK, ["test"] = s.Test, ["train"] = s.Train,
        };
        double probe, knn;
        if (done && File.Exists(scorePath) && JsonNode.Parse(File.ReadAllText(scorePath)) is JsonObject cached
            && JsonNode.DeepEquals(cached["eval"], evalKey))
        {
            probe = cached["probe_top1"]!.GetValue<double>();
            knn = cached["knn_top1"]!.GetValue<double>();
            trainSeconds = cached["seconds"]?.GetValue<double>() ?? double.NaN;
            done = false; // the stored time is the original one
        }
        else
        {
            (probe, knn) = Evaluate(student);
            run.WriteText(scorePath, new JsonObject
            {
                ["eval"] = evalKey, ["probe_top1"] = probe, ["knn_top1"] = knn, ["seconds"] = done ? null : Math.Round(trainSeconds, 1),
            }.ToJsonString());
        }
        var losses = File.Exists(run.MetricsPath)
            ? File.ReadLines(run.MetricsPath).Where(l => l.Length > 0).Select(l => JsonNode.Parse(l)!["loss"]!.GetValue<double>()).ToArray()
            : [];
        return new Score
        {
            Name = Cell.Label(cell.Method),
            Cell = cell,
            Probe = probe,
            Knn = knn,
            Params = Count(student.Config),
            TrainableParams = cell.Method == DistillMethod.Weco ? 0 : config["trainable_params"]!.GetValue<long>(),
            Depth = student.Config.Depth,
            Seconds = done ? double.NaN : trainSeconds,
            Images = config["images"]!.GetValue<int>(),
            Losses = losses,
        };
    }

    (double Probe, double Knn) Evaluate(VisionTransformer model)
    {
        var preprocess = ModelPreprocess.For(model.Config);
        using var trainFeatures = FeatureExtractor.Extract(model, probeTrain, preprocess, FeatureKind.Cls);
        using var testFeatures = FeatureExtractor.Extract(model, probeTest, preprocess, FeatureKind.Cls);
        var trainLabels = probeTrain.Select(i => i.Label).ToArray();
        var testLabels = probeTest.Select(i => i.Label).ToArray();
        var probe = LinearProbe.Train(trainFeatures, trainLabels, testFeatures, testLabels, classes, s.Probe);
        var knn = Knn.Classify(trainFeatures, trainLabels, testFeatures, testLabels, classes, Math.Min(s.KnnK, trainLabels.Length));
        return (probe.Top1, knn.Top1);
    }

    /// <summary>Parameters of the deployed model (a plain ViT of this shape; LoRA adapters fold into it).</summary>
    public static long Count(VitConfig cfg)
    {
        long d = cfg.EmbedDim, h = cfg.MlpHidden, p = cfg.PatchSize;
        long block = 2 * 2 * d + (3 * d * d + (cfg.QkvBias ? 3 * d : 0)) + (d * d + d) + (d * h + h) + (h * d + d);
        long embed = cfg.InChans * p * p * d + d + d + (cfg.NumPatches + 1) * d;
        long head = 2 * d + (cfg.NumClasses > 0 ? d * cfg.NumClasses + cfg.NumClasses : 0) + (cfg.GlobalPool == GlobalPool.Avg ? 2 * d : 0);
        return embed + cfg.Depth * block + head;
    }
}
