using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using WeCoLoRA.Data;
using WeCoLoRA.Distillation;

namespace WeCoLoRA.Reproduction;

/// <summary>The demo's settings; the defaults are the documented demo (docs/demo.md).</summary>
public sealed record DemoOptions
{
    public string Out { get; init; } = "runs/demo";
    public string? Teacher { get; init; }
    public string? Train { get; init; }
    public string? Test { get; init; }
    public double Ratio { get; init; } = 0.01;
    public int R { get; init; } = 2;
    public int Rank { get; init; } = 16;
    public int Epochs { get; init; } = 5;
    public int BatchSize { get; init; } = 32;
    /// <summary>Absolute lr for both trained methods (METHOD.md's blr × batch / 256 would give 1.25e-4 at batch 32).</summary>
    public double Lr { get; init; } = 5e-4;
    public int ProbeTrain { get; init; } = 1000;
    public int ProbeTest { get; init; } = 1000;
    public int Seed { get; init; }
    public int Workers { get; init; }
}

/// <summary>
/// The main job in miniature: copy every r-th block of the embedded Fashion-MNIST teacher, distill on α of the training
/// images by WeCoLoRA and by WeCo+KD with the same recipe, and score teacher, WeCo only, WeCo+KD and WeCoLoRA.
/// </summary>
public static class Demo
{
    public static IReadOnlyList<DistillMethod> Methods { get; } = [DistillMethod.Weco, DistillMethod.WecoKd, DistillMethod.WeCoLoRA];

    public static ExperimentSettings Settings(DemoOptions o) => new()
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
        Workers = o.Workers,
    };

    /// <summary>Runs the demo; returns the rows (teacher first) and writes OUT/results.json and OUT/table.md.</summary>
    public static IReadOnlyList<Score> Run(DemoOptions o, Action<string>? log = null, Func<Cell, IDistillObserver?>? observer = null, CancellationToken ct = default)
    {
        var clock = Stopwatch.StartNew();
        Directory.CreateDirectory(o.Out);
        var exp = new Experiment(Settings(o), log);
        log?.Invoke("scoring the teacher");
        var rows = new List<Score> { exp.ScoreTeacher() };
        foreach (var m in Methods)
        {
            var cell = new Cell(m, o.Ratio, o.R, o.Rank, o.Lr, o.Seed);
            rows.Add(exp.Run(cell, observer?.Invoke(cell), ct));
            log?.Invoke($"{rows[^1].Name}: probe {rows[^1].Probe:F2}%, kNN {rows[^1].Knn:F2}%");
        }
        var table = Table(rows);
        File.WriteAllText(Path.Combine(o.Out, "table.md"), table);
        File.WriteAllText(Path.Combine(o.Out, "results.json"), new JsonObject
        {
            ["options"] = JsonSerializer.SerializeToNode(o, DistillSettings.Json),
            ["data"] = EmbeddedData.FashionMnistDescription,
            ["probe"] = JsonSerializer.SerializeToNode(exp.Settings.Probe, DistillSettings.Json),
            ["rows"] = new JsonArray([.. rows.Select(r => (JsonNode)r.ToJson())]),
            ["seconds"] = Math.Round(clock.Elapsed.TotalSeconds, 1),
        }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        return rows;
    }

    /// <summary>The comparison as a Markdown table.</summary>
    public static string Table(IReadOnlyList<Score> rows)
    {
        var sb = new StringBuilder();
        sb.AppendLine("| model | depth | params | trainable | linear probe top-1 % | kNN top-1 % | distill time |");
        sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|");
        foreach (var r in rows)
            sb.AppendLine(CultureInfo.InvariantCulture, $"| {r.Name} | {r.Depth} | {Millions(r.Params)} | {(r.Cell is null ? "–" : Millions(r.TrainableParams))} | {r.Probe:F2} | {r.Knn:F2} | {(r.Cell is null ? "–" : Time(r.Seconds))} |");
        return sb.ToString();
    }

    static string Millions(long n) => n >= 1_000_000 ? $"{n / 1e6:F2}M" : $"{n / 1e3:F1}k";

    static string Time(double seconds) => double.IsNaN(seconds) ? "(reused)" : TimeSpan.FromSeconds(seconds).ToString(@"m\:ss", CultureInfo.InvariantCulture);
}
