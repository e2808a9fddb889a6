using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using WeCoLoRA.Data;
using WeCoLoRA.Distillation;

namespace WeCoLoRA.Reproduction;

/// <summary>What `reproduce` runs: the paper's ablation grid and its sweeps, reduced unless <see cref="Full"/>.</summary>
public sealed record ReproduceOptions
{
    public string Out { get; init; } = "runs/reproduce";
    public bool Full { get; init; }
    public int Seeds { get; init; } = 1;
    public string? Teacher { get; init; }
    public string? Train { get; init; }
    public string? Test { get; init; }
    public int Epochs { get; init; } = 5;
    public int BatchSize { get; init; } = 32;
    /// <summary>The lr of every cell outside the lr sweep (the demo's).</summary>
    public double Lr { get; init; } = 5e-4;
    /// <summary>The rank of every cell outside the rank sweep.</summary>
    public int Rank { get; init; } = 16;
    public int ProbeTrain { get; init; } = 1000;
    public int ProbeTest { get; init; } = 1000;
    /// <summary>A custom grid (tests, partial reruns); null = <see cref="Grid.Full"/> or <see cref="Grid.Reduced"/>.</summary>
    public Grid? Grid { get; init; }
}

/// <summary>The grid's axes.</summary>
public sealed record Grid(DistillMethod[] Methods, double[] Ratios, int[] Rs, int[] Ranks, double[] DataRatios, double[] Lrs)
{
    public static readonly DistillMethod[] AllMethods =
        [DistillMethod.KdScratch, DistillMethod.Weco, DistillMethod.WecoKd, DistillMethod.LoraQv, DistillMethod.WeCoLoRA];

    /// <summary>The whole grid: methods × α {1%, 10%} × r {2, 3}; rank 4…128; α 0.5%…25%; lr 2.5e-4…1e-2.</summary>
    public static Grid Full => new(AllMethods, [0.01, 0.10], [2, 3], [4, 8, 16, 32, 64, 128], [0.005, 0.01, 0.025, 0.05, 0.10, 0.25],
        [2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2]);

    /// <summary>The default: α = 1% only for the method grid, and three points per sweep.</summary>
    public static Grid Reduced => new(AllMethods, [0.01], [2, 3], [4, 16, 64], [0.005, 0.01, 0.025], [2.5e-4, 1e-3, 1e-2]);

    /// <summary>Every distinct cell, sweeps at r = 2 and α = 1% unless swept; rank and lr sweeps for WeCoLoRA (lr also WeCo+KD).</summary>
    public List<Cell> Cells(int seeds, int rank, double lr)
    {
        var cells = new List<Cell>();
        void Add(Cell c)
        {
            if (!cells.Contains(c)) cells.Add(c);
        }
        for (int seed = 0; seed < seeds; seed++)
        {
            foreach (var r in Rs)
                foreach (var a in Ratios)
                    foreach (var m in Methods)
                        Add(new Cell(m, a, r, rank, lr, seed));
            foreach (var k in Ranks) Add(new Cell(DistillMethod.WeCoLoRA, 0.01, 2, k, lr, seed));
            // The lr sweep before the data sweep: its cells are all α = 1% and cheap; large α are the slowest cells.
            foreach (var l in Lrs)
                foreach (var m in new[] { DistillMethod.WeCoLoRA, DistillMethod.WecoKd })
                    Add(new Cell(m, 0.01, 2, rank, l, seed));
            foreach (var a in DataRatios)
                foreach (var m in new[] { DistillMethod.WeCoLoRA, DistillMethod.WecoKd })
                    Add(new Cell(m, a, 2, rank, lr, seed));
        }
        // Untrained students do not depend on rank, lr or seed: one per (α, r) is enough (α only changes nothing either, but keeps the table simple).
        return cells.Where(c => c.Method != DistillMethod.Weco || (c.Rank == rank && c.Lr == lr && c.Seed == 0)).ToList();
    }
}

/// <summary>Runs the grid with <see cref="Experiment"/>, then writes report.md, results.json and PNG plots.</summary>
public static class Reproduce
{
    public static ExperimentSettings Settings(ReproduceOptions o) => new()
    {
        Teacher = o.Teacher ?? EmbeddedData.Teacher,
        Train = o.Train ?? EmbeddedData.FashionMnist("train"),
        Test = o.Test ?? EmbeddedData.FashionMnist("test"),
        Out = o.Out,
        Epochs = o.Epochs,
        WarmupEpochs = Math.Min(1, o.Epochs),
        BatchSize = o.BatchSize,
        ProbeTrain = o.ProbeTrain,
        ProbeTest = o.ProbeTest,
    };

    public static (Score Teacher, List<Score> Cells) Run(ReproduceOptions o, Action<string>? log = null, CancellationToken ct = default)
    {
        if (o.Seeds < 1) throw new ArgumentException($"--seeds {o.Seeds} must be at least 1");
        var clock = Stopwatch.StartNew();
        Directory.CreateDirectory(o.Out);
        var grid = o.Grid ?? (o.Full ? Grid.Full : Grid.Reduced);
        var cells = grid.Cells(o.Seeds, o.Rank, o.Lr);
        var exp = new Experiment(Settings(o), log);
        log?.Invoke($"{cells.Count} cells ({(o.Full ? "full" : "reduced")} grid, {o.Seeds} seed(s)); scoring the teacher");
        var teacher = exp.ScoreTeacher();
        var scores = new List<Score>();
        for (int i = 0; i < cells.Count; i++)
        {
            ct.ThrowIfCancellationRequested();
            log?.Invoke($"[{i + 1}/{cells.Count}] {cells[i].Name} ({clock.Elapsed:h\\:mm\\:ss} elapsed)");
            scores.Add(exp.Run(cells[i], ct: ct));
            // Written after every cell, so an interrupted grid still leaves its report (and reruns skip finished cells).
            Write(o, grid, teacher, scores, clock.Elapsed, exp.Settings);
        }
        Write(o, grid, teacher, scores, clock.Elapsed, exp.Settings);
        return (teacher, scores);
    }

    static void Write(ReproduceOptions o, Grid grid, Score teacher, List<Score> scores, TimeSpan elapsed, ExperimentSettings settings)
    {
        File.WriteAllText(Path.Combine(o.Out, "results.json"), new JsonObject
        {
            ["options"] = JsonSerializer.SerializeToNode(o, DistillSettings.Json),
            ["data"] = EmbeddedData.FashionMnistDescription,
            ["probe"] = JsonSerializer.SerializeToNode(settings.Probe, DistillSettings.Json),
            ["teacher"] = teacher.ToJson(),
            ["cells"] = new JsonArray([.. scores.Select(s => (JsonNode)s.ToJson())]),
            ["seconds"] = Math.Round(elapsed.TotalSeconds, 1),
        }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        File.WriteAllText(Path.Combine(o.Out, "report.md"), Report(o, grid, teacher, scores, elapsed));
        Plots.Write(o.Out, grid, o, scores);
    }

    /// <summary>Mean ± std (sample std over seeds) of the linear-probe top-1 of matching cells, or "–".</summary>
    public static string Cellf(IEnumerable<Score> matching, Func<Score, double>? metric = null)
    {
        var v = matching.Select(metric ?? (s => s.Probe)).ToArray();
        if (v.Length == 0) return "–";
        double mean = v.Average();
        if (v.Length == 1) return mean.ToString("F1", CultureInfo.InvariantCulture);
        double std = Math.Sqrt(v.Sum(x => (x - mean) * (x - mean)) / (v.Length - 1));
        return string.Create(CultureInfo.InvariantCulture, $"{mean:F1} ± {std:F1}");
    }

    static string Pct(double a) => (a * 100).ToString("0.###", CultureInfo.InvariantCulture) + "%";

    public static string Report(ReproduceOptions o, Grid grid, Score teacher, List<Score> s, TimeSpan elapsed)
    {
        var sb = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        sb.AppendLine("# WeCoLoRA ablation in miniature (Fashion-MNIST)");
        sb.AppendLine();
        sb.AppendLine(inv, $"Data: {EmbeddedData.FashionMnistDescription}. Teacher: {o.Teacher ?? "embedded (data/teacher-fashion-mnist)"}, " +
                           $"linear probe {teacher.Probe:F1}% / kNN {teacher.Knn:F1}%. Grid: {(o.Full ? "full" : "reduced (default)")}, {o.Seeds} seed(s); " +
                           $"{o.Epochs} epochs, batch {o.BatchSize}, lr {o.Lr} (absolute), LoRA rank {o.Rank} unless swept. " +
                           $"Metric: linear-probe top-1 % on {o.ProbeTest} test images (probe trained on {o.ProbeTrain} labelled train images), mean ± std over seeds; kNN top-1 in results.json. " +
                           $"Wall time {elapsed:h\\:mm\\:ss}.");
        sb.AppendLine();
        Score[] At(DistillMethod m, double a, int r, int? rank = null, double? lr = null) =>
            s.Where(x => x.Cell!.Method == m && x.Cell.Ratio == a && x.Cell.R == r && x.Cell.Rank == (rank ?? o.Rank) && x.Cell.Lr == (lr ?? o.Lr)).ToArray();

        sb.AppendLine("## Ablation (paper's Table layout: rows = components, columns = α)");
        foreach (var r in grid.Rs)
        {
            sb.AppendLine();
            sb.AppendLine(inv, $"r = {r} (student depth {teacher.Depth / r + (teacher.Depth % r == 0 ? 0 : 1)})");
            sb.AppendLine();
            sb.AppendLine("| method | " + string.Join(" | ", grid.Ratios.Select(a => $"α = {Pct(a)}")) + " |");
            sb.AppendLine("|---|" + string.Concat(grid.Ratios.Select(_ => "---:|")));
            foreach (var m in grid.Methods)
                sb.AppendLine($"| {Cell.Label(m)} | " + string.Join(" | ", grid.Ratios.Select(a => Cellf(At(m, a, r)))) + " |");
        }
        sb.AppendLine();
        sb.AppendLine("## Rank sweep (WeCoLoRA, r = 2, α = 1%)");
        sb.AppendLine();
        sb.AppendLine("| rank | probe top-1 % | kNN top-1 % | trainable params |");
        sb.AppendLine("|---:|---:|---:|---:|");
        foreach (var k in grid.Ranks)
        {
            var x = At(DistillMethod.WeCoLoRA, 0.01, 2, rank: k);
            sb.AppendLine(inv, $"| {k} | {Cellf(x)} | {Cellf(x, y => y.Knn)} | {(x.Length > 0 ? x[0].TrainableParams.ToString(inv) : "–")} |");
        }
        sb.AppendLine();
        sb.AppendLine("## Data sweep (r = 2)");
        sb.AppendLine();
        sb.AppendLine("| α | images | WeCo + KD | WeCoLoRA |");
        sb.AppendLine("|---:|---:|---:|---:|");
        foreach (var a in grid.DataRatios)
        {
            var w = At(DistillMethod.WeCoLoRA, a, 2);
            sb.AppendLine(inv, $"| {Pct(a)} | {(w.Length > 0 ? w[0].Images.ToString(inv) : "–")} | {Cellf(At(DistillMethod.WecoKd, a, 2))} | {Cellf(w)} |");
        }
        sb.AppendLine();
        sb.AppendLine("## Learning-rate sweep (absolute lr, r = 2, α = 1%)");
        sb.AppendLine();
        sb.AppendLine(inv, $"METHOD.md's lr = blr × batch / 256 with blr 1e-3 gives {1e-3 * o.BatchSize / 256:G3} at batch {o.BatchSize}, below this sweep.");
        sb.AppendLine();
        sb.AppendLine("| lr | WeCo + KD | WeCoLoRA |");
        sb.AppendLine("|---:|---:|---:|");
        foreach (var l in grid.Lrs.Append(o.Lr).Distinct().Order())
            sb.AppendLine(inv, $"| {l:G3} | {Cellf(At(DistillMethod.WecoKd, 0.01, 2, lr: l))} | {Cellf(At(DistillMethod.WeCoLoRA, 0.01, 2, lr: l))} |");
        sb.AppendLine();
        sb.AppendLine("Plots: accuracy_vs_rank.png, accuracy_vs_alpha.png, accuracy_vs_lr.png, loss_curves.png.");
        return sb.ToString();
    }
}
