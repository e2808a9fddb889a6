using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.Json.Nodes;

namespace WeCoLoRA.Benchmarking;

/// <summary>One child run of either benchmark: its JSON line and the peak RSS its process reached.</summary>
public sealed record ChildRun(string Who, JsonObject Json, double? PeakRssMb, double? Load1)
{
    public double ImagesPerSecond => Json["img_per_s"]!.GetValue<double>();
    public double StepMs => Json["step_ms"]!.GetValue<double>();
}

/// <summary>Ours against the peer for one configuration, runs alternated A B A B …</summary>
public sealed record Comparison(BenchOptions Options, IReadOnlyList<ChildRun> Ours, IReadOnlyList<ChildRun> Peer, StepFlops Flops)
{
    static double Median(IEnumerable<double> v)
    {
        var a = v.Order().ToArray();
        return a.Length % 2 == 1 ? a[a.Length / 2] : (a[a.Length / 2 - 1] + a[a.Length / 2]) / 2;
    }

    public double OursImagesPerSecond => Median(Ours.Select(r => r.ImagesPerSecond));
    public double PeerImagesPerSecond => Median(Peer.Select(r => r.ImagesPerSecond));
    /// <summary>Ours / peer images per second (medians over the runs).</summary>
    public double Ratio => OursImagesPerSecond / PeerImagesPerSecond;
    /// <summary>The ratio of each adjacent pair (how much the load moved it).</summary>
    public IEnumerable<double> PairRatios => Ours.Zip(Peer, (a, b) => a.ImagesPerSecond / b.ImagesPerSecond);
    public double? OursPeakRssMb => Ours.Max(r => r.PeakRssMb);
    public double? PeerPeakRssMb => Peer.Max(r => r.PeakRssMb);
    /// <summary>
    /// The matmul peak of the step's precision, the median over our runs; each run measures it right after its steps
    /// (the load the peer's adjacent run saw is the closest we have).
    /// </summary>
    public double? PeakGFlops
    {
        get
        {
            var key = Options.Precision == Distillation.Precision.Bf16 ? "bf16" : "fp32";
            var peaks = Ours.Select(r => r.Json["peak_gflop_per_s"]?[key]?.GetValue<double>()).OfType<double>().ToList();
            return peaks.Count == 0 ? null : Median(peaks);
        }
    }

    /// <summary>Ours: the median of each run's MFU (achieved over its own peak). Peer: its achieved GFLOP/s (same math, same FLOPs) over <see cref="PeakGFlops"/>.</summary>
    public double? OursMfu
    {
        get
        {
            var m = Ours.Select(r => r.Json["mfu"]?.GetValue<double>()).OfType<double>().ToList();
            return m.Count == 0 ? null : Median(m);
        }
    }

    public double? PeerMfu => PeakGFlops is double p ? Flops.Total * PeerImagesPerSecond / Options.Batch / 1e9 / p : null;

    public JsonObject ToJson() => new()
    {
        ["model"] = Options.Model,
        ["precision"] = Options.Precision == Distillation.Precision.Bf16 ? "bf16" : "fp32",
        ["r"] = Options.R,
        ["rank"] = Options.Rank,
        ["batch"] = Options.Batch,
        ["threads"] = Options.ResolvedThreads,
        ["ours_img_per_s"] = Math.Round(OursImagesPerSecond, 2),
        ["peer_img_per_s"] = Math.Round(PeerImagesPerSecond, 2),
        ["ratio"] = Math.Round(Ratio, 3),
        ["pair_ratios"] = new JsonArray([.. PairRatios.Select(r => (JsonNode)Math.Round(r, 3))]),
        ["gflop_per_step"] = Math.Round(Flops.Total / 1e9, 2),
        ["peak_gflop_per_s"] = PeakGFlops is double p ? Math.Round(p, 1) : null,
        ["ours_mfu"] = OursMfu is double om ? Math.Round(om, 4) : null,
        ["peer_mfu"] = PeerMfu is double pm ? Math.Round(pm, 4) : null,
        ["ours_peak_rss_mb"] = OursPeakRssMb,
        ["peer_peak_rss_mb"] = PeerPeakRssMb,
        ["ours"] = new JsonArray([.. Ours.Select(Run)]),
        ["peer"] = new JsonArray([.. Peer.Select(Run)]),
    };

    static JsonNode Run(ChildRun r)
    {
        var j = (JsonObject)r.Json.DeepClone();
        j["process_peak_rss_mb"] = r.PeakRssMb is double m ? Math.Round(m, 1) : null;
        j["load1_after"] = r.Load1;
        return j;
    }

    public string ToText()
    {
        var c = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine(c, $"{Options.Model} {(Options.Precision == Distillation.Precision.Bf16 ? "bf16" : "fp32")} batch {Options.Batch} r {Options.R} rank {Options.Rank} threads {Options.ResolvedThreads}:");
        sb.AppendLine(c, $"  ours {OursImagesPerSecond:F2} img/s [{string.Join(", ", Ours.Select(r => r.ImagesPerSecond.ToString("F2", c)))}]  peer {PeerImagesPerSecond:F2} img/s [{string.Join(", ", Peer.Select(r => r.ImagesPerSecond.ToString("F2", c)))}]");
        sb.AppendLine(c, $"  ratio ours/peer {Ratio:F2}x (pairs: {string.Join(", ", PairRatios.Select(r => r.ToString("F2", c)))}){(PeakGFlops is null ? "" : $"  MFU ours {OursMfu:P1}, peer {PeerMfu:P1} (peak {PeakGFlops:F0} GFLOP/s)")}");
        sb.AppendLine(c, $"  peak RSS ours {OursPeakRssMb:F0} MB, peer {PeerPeakRssMb:F0} MB");
        if (Ours.Count > 0 && Ours[^1].Json["phase_share"] is JsonObject share)
            sb.AppendLine(c, $"  ours by phase (last run): {string.Join(" | ", share.Select(kv => $"{kv.Key} {kv.Value!.GetValue<double>():P1}"))}");
        return sb.ToString();
    }
}

/// <summary>Runs our benchmark and the peer's (distill_step_bench.py) as child processes, alternately.</summary>
public static class ReferenceComparison
{
    public const string ReferenceFile = "distill_step_bench.py";
    public const string ReferenceEnv = "WECOLORA_REFERENCE";

    /// <summary>
    /// The peer script: an explicit path, else $WECOLORA_REFERENCE, else shared/reference/distill_step_bench.py in a folder
    /// above the repository (the repo's ../shared/reference/, also from a worktree deeper down) or the working directory.
    /// </summary>
    public static string Locate(string? explicitPath)
    {
        var path = explicitPath ?? Environment.GetEnvironmentVariable(ReferenceEnv);
        if (path is not null)
            return File.Exists(path) ? Path.GetFullPath(path) : throw new ArgumentException($"--reference {path}: no such file");
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "shared", "reference", ReferenceFile);
                if (File.Exists(candidate)) return candidate;
            }
        throw new ArgumentException($"cannot find the peer benchmark shared/reference/{ReferenceFile} above {Directory.GetCurrentDirectory()}; pass --reference PATH or set {ReferenceEnv}");
    }

    /// <summary>How to start this program again (apphost, or `dotnet x.dll`), followed by <paramref name="subcommand"/>.</summary>
    public static (string Exe, IReadOnlyList<string> Prefix) Self(params string[] subcommand)
    {
        var exe = Environment.ProcessPath ?? throw new InvalidOperationException("no process path");
        if (Path.GetFileNameWithoutExtension(exe) == "dotnet")
            return (exe, [Assembly.GetEntryAssembly()!.Location, .. subcommand]);
        return (exe, subcommand);
    }

    /// <summary>
    /// <paramref name="pairs"/> × (ours, peer) with the same arguments and thread count. Our child measures the matmul
    /// peak after its steps (unless <see cref="BenchOptions.MeasurePeak"/> is off); its process peak RSS is polled like the
    /// peer's (the peak matmuls' 3 matrices come after the step's memory is freed and do not raise it).
    /// </summary>
    public static Comparison Run(BenchOptions options, int pairs, (string Exe, IReadOnlyList<string> Prefix) self, string python, string reference,
        Action<string>? log = null)
    {
        var o = options with { Threads = options.ResolvedThreads };
        var ours = new List<ChildRun>();
        var peer = new List<ChildRun>();
        for (int i = 0; i < pairs; i++)
        {
            var a = RunChild("ours", self.Exe, [.. self.Prefix, .. o.Args(), "--json"]);
            ours.Add(a);
            log?.Invoke($"pair {i + 1}/{pairs}: ours {a.ImagesPerSecond:F2} img/s, peak RSS {a.PeakRssMb:F0} MB, load {a.Load1:F2}");
            var b = RunChild("peer", python, [reference, .. o.PeerArgs()]);
            peer.Add(b);
            log?.Invoke($"pair {i + 1}/{pairs}: peer {b.ImagesPerSecond:F2} img/s, peak RSS {b.PeakRssMb:F0} MB, load {b.Load1:F2}");
        }
        var config = Models.VitPresets.Get(o.Model);
        var flops = FlopCounter.Count(config, Distillation.WeightCopy.EveryRth(config.Depth, o.R).Length,
            new Lora.LoraSpec(Lora.LoraSpec.AllTargets, o.Rank, o.Rank), o.Batch);
        return new Comparison(o, ours, peer, flops);
    }

    /// <summary>Starts a benchmark process, polls its VmHWM until it exits, and parses the last JSON line it printed.</summary>
    public static ChildRun RunChild(string who, string exe, IReadOnlyList<string> args)
    {
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {exe}");
        var stdout = p.StandardOutput.ReadToEndAsync();
        double? peak = null;
        while (!p.WaitForExit(50))
            if (SystemStats.PeakRssMb(p.Id) is double m) peak = Math.Max(peak ?? 0, m);
        p.WaitForExit();
        var text = stdout.Result;
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"{who} benchmark failed (exit {p.ExitCode}): {exe} {string.Join(' ', args)}\n{text}");
        var line = text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault(l => l.StartsWith('{'));
        var json = line is null ? null : JsonNode.Parse(line) as JsonObject;
        if (json is null) throw new InvalidOperationException($"{who} benchmark printed no JSON line: {text}");
        return new ChildRun(who, json, peak, SystemStats.Load1());
    }
}
