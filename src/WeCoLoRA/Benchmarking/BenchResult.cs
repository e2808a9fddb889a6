using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using WeCoLoRA.Distillation;

namespace WeCoLoRA.Benchmarking;

/// <summary>What one benchmark run measured; <see cref="ToJson"/> carries the peer's keys (img_per_s, step_ms) and ours.</summary>
public sealed record BenchResult(
    BenchOptions Options, int Threads, int Lanes, int StudentDepth, IReadOnlyList<StepTimes> Steps, StepFlops Flops,
    double? PeakFp32GFlops, double? PeakBf16GFlops, double? PeakRssMb, IReadOnlyList<double> RssMbByStep, double? PageFaultsPerStep, double LastLoss, double? Load1)
{
    /// <summary>The median step (by total time), as the peer reports.</summary>
    public double StepMs => Median(Steps.Select(s => s.Total));
    public double ImagesPerSecond => Options.Batch / (StepMs / 1000.0);
    public double AchievedGFlops => Flops.Total / (StepMs / 1000.0) / 1e9;
    /// <summary>The measured matmul peak of the step's precision.</summary>
    public double? PeakGFlops => Options.Precision == Precision.Bf16 ? PeakBf16GFlops : PeakFp32GFlops;
    public double? Mfu => PeakGFlops is double p ? AchievedGFlops / p : null;

    /// <summary>Mean share of each phase in the step (data, teacher forward, student forward, backward, optimizer).</summary>
    public StepTimes Shares
    {
        get
        {
            double total = Steps.Sum(s => s.Total);
            return new StepTimes(Steps.Sum(s => s.Data) / total, Steps.Sum(s => s.TeacherForward) / total, Steps.Sum(s => s.StudentForward) / total,
                Steps.Sum(s => s.Backward) / total, Steps.Sum(s => s.Optimizer) / total);
        }
    }

    static double Median(IEnumerable<double> values)
    {
        var v = values.Order().ToArray();
        return v.Length == 0 ? double.NaN : v[v.Length / 2];
    }

    static double R(double v, int digits) => Math.Round(v, digits);

    public JsonObject ToJson()
    {
        var o = Options;
        var shares = Shares;
        // A few points of the RSS curve (after each step), first and last included.
        int n = RssMbByStep.Count;
        var curve = new JsonArray();
        foreach (int i in Enumerable.Range(0, Math.Min(n, 11)).Select(k => n <= 11 ? k : (int)Math.Round(k * (n - 1) / 10.0)).Distinct())
            curve.Add(new JsonObject { ["step"] = i + 1, ["rss_mb"] = R(RssMbByStep[i], 1) });
        return new JsonObject
        {
            ["model"] = o.Model,
            ["r"] = o.R,
            ["rank"] = o.Rank,
            ["batch"] = o.Batch,
            ["precision"] = o.Precision == Precision.Bf16 ? "bf16" : "fp32",
            ["threads"] = Threads,
            ["lanes"] = Lanes,
            ["img_per_s"] = R(ImagesPerSecond, 2),
            ["step_ms"] = R(StepMs, 1),
            ["steps"] = o.Steps,
            ["warmup"] = o.Warmup,
            ["student_depth"] = StudentDepth,
            ["data"] = o.Data is null ? "random" : o.Data,
            ["phase_ms"] = new JsonObject
            {
                ["data"] = R(Median(Steps.Select(s => s.Data)), 1),
                ["teacher_forward"] = R(Median(Steps.Select(s => s.TeacherForward)), 1),
                ["student_forward"] = R(Median(Steps.Select(s => s.StudentForward)), 1),
                ["backward"] = R(Median(Steps.Select(s => s.Backward)), 1),
                ["optimizer"] = R(Median(Steps.Select(s => s.Optimizer)), 1),
            },
            ["phase_share"] = new JsonObject
            {
                ["data"] = R(shares.Data, 4),
                ["teacher_forward"] = R(shares.TeacherForward, 4),
                ["student_forward"] = R(shares.StudentForward, 4),
                ["backward"] = R(shares.Backward, 4),
                ["optimizer"] = R(shares.Optimizer, 4),
            },
            ["gflop_per_step"] = new JsonObject
            {
                ["teacher_forward"] = R(Flops.TeacherForward / 1e9, 2),
                ["student_forward"] = R(Flops.StudentForward / 1e9, 2),
                ["student_backward"] = R(Flops.StudentBackward / 1e9, 2),
                ["total"] = R(Flops.Total / 1e9, 2),
            },
            ["achieved_gflop_per_s"] = R(AchievedGFlops, 1),
            ["peak_gflop_per_s"] = new JsonObject
            {
                ["fp32"] = PeakFp32GFlops is double f ? R(f, 1) : null,
                ["bf16"] = PeakBf16GFlops is double b ? R(b, 1) : null,
            },
            ["mfu"] = Mfu is double m ? R(m, 4) : null,
            ["peak_rss_mb"] = PeakRssMb is double p ? R(p, 1) : null,
            ["rss_mb_curve"] = curve,
            ["page_faults_per_step"] = PageFaultsPerStep is double f2 ? R(f2, 0) : null,
            ["loss"] = double.IsFinite(LastLoss) ? LastLoss : null,
            ["load1"] = Load1,
            ["step_ms_all"] = new JsonArray([.. Steps.Select(s => (JsonNode)R(s.Total, 1))]),
        };
    }

    public string ToText()
    {
        var o = Options;
        var s = Shares;
        var sb = new StringBuilder();
        var c = CultureInfo.InvariantCulture;
        sb.AppendLine(c, $"{o.Model}  r={o.R} (student {StudentDepth} blocks)  rank={o.Rank}  batch={o.Batch}  {(o.Precision == Precision.Bf16 ? "bf16" : "fp32")}  threads={Threads}  lanes={Lanes}  data={o.Data ?? "random"}  load={Load1:F2}");
        sb.AppendLine(c, $"  {ImagesPerSecond:F2} images/s   {StepMs:F1} ms/step (median of {o.Steps}, after {o.Warmup} warm-up)");
        sb.AppendLine(c, $"  teacher fwd {s.TeacherForward:P1} | student fwd {s.StudentForward:P1} | backward {s.Backward:P1} | optimizer {s.Optimizer:P1} | data {s.Data:P1}{(o.Data is null ? "" : " (waiting for the loader)")}");
        sb.AppendLine(c, $"  {Flops.Total / 1e9:F1} GFLOP/step (teacher {Flops.TeacherForward / 1e9:F1}, student fwd {Flops.StudentForward / 1e9:F1}, bwd {Flops.StudentBackward / 1e9:F1}) -> {AchievedGFlops:F1} GFLOP/s");
        if (PeakGFlops is double p)
            sb.AppendLine(c, $"  matmul peak fp32 {PeakFp32GFlops:F1} / bf16 {PeakBf16GFlops:F1} GFLOP/s -> MFU {Mfu:P1}");
        if (RssMbByStep.Count > 0)
            sb.AppendLine(c, $"  peak RSS {PeakRssMb:F0} MB; RSS after step 1 {RssMbByStep[0]:F0} MB, after step {RssMbByStep.Count} {RssMbByStep[^1]:F0} MB; {PageFaultsPerStep:F0} page faults/step");
        return sb.ToString();
    }
}
