using System.Globalization;
using WeCoLoRA.Distillation;

namespace WeCoLoRA.Benchmarking;

/// <summary>One benchmark configuration; the flags are the peer benchmark's (distill_step_bench.py) plus ours.</summary>
public sealed record BenchOptions
{
    public string Model { get; init; } = "vit_small_patch16_224";
    public int R { get; init; } = 2;
    public int Rank { get; init; } = 64;
    public int Batch { get; init; } = 32;
    public Precision Precision { get; init; } = Precision.Fp32;
    public int Steps { get; init; } = 10;
    public int Warmup { get; init; } = 3;
    /// <summary>Intra-op threads; 0 = every core (as the peer).</summary>
    public int Threads { get; init; }
    /// <summary>Shards of each batch run side by side, each on its own share of the threads (0 = auto, <see cref="Runtime.TorchLanes.Resolve"/>).</summary>
    public int Lanes { get; init; }
    /// <summary>A folder of images read through <see cref="Data.BatchLoader"/> with augmentation; null = random tensors.</summary>
    public string? Data { get; init; }
    /// <summary>Decode threads for <see cref="Data"/> (0 = one per core).</summary>
    public int Workers { get; init; }
    /// <summary>Time large square matmuls in fp32 and bf16 first (the MFU denominator).</summary>
    public bool MeasurePeak { get; init; } = true;
    /// <summary>Side of the square matrices of the peak measurement.</summary>
    public int PeakSize { get; init; } = 2048;
    public int Seed { get; init; }

    public int ResolvedThreads => Threads > 0 ? Threads : Environment.ProcessorCount;

    public BenchOptions Validate()
    {
        Check(R >= 1, $"--r {R} must be at least 1");
        Check(Rank >= 1, $"--rank {Rank} must be at least 1");
        Check(Batch >= 1, $"--batch {Batch} must be at least 1");
        Check(Steps >= 1, $"--steps {Steps} must be at least 1");
        Check(Warmup >= 0, $"--warmup {Warmup} must be >= 0");
        Check(Threads >= 0, $"--threads {Threads} must be >= 0");
        Check(Lanes >= 0, $"--lanes {Lanes} must be >= 0");
        Check(Workers >= 0, $"--workers {Workers} must be >= 0");
        Check(PeakSize >= 64, $"--peak-size {PeakSize} must be at least 64");
        Models.VitPresets.Get(Model);
        return this;
    }

    static void Check(bool ok, string message)
    {
        if (!ok) throw new ArgumentException(message);
    }

    /// <summary>The arguments shared with the peer benchmark, in its syntax.</summary>
    public IReadOnlyList<string> PeerArgs() =>
    [
        "--model", Model, "--r", Inv(R), "--rank", Inv(Rank), "--batch", Inv(Batch),
        "--precision", Precision == Precision.Bf16 ? "bf16" : "fp32", "--steps", Inv(Steps), "--warmup", Inv(Warmup),
        "--threads", Inv(ResolvedThreads),
    ];

    /// <summary>Our own flags for a child run (the peer's plus data and peak settings).</summary>
    public IReadOnlyList<string> Args()
    {
        var args = new List<string>(PeerArgs()) { "--seed", Inv(Seed), "--lanes", Inv(Lanes) };
        if (Data is not null) args.AddRange(["--data", Data, "--workers", Inv(Workers)]);
        if (!MeasurePeak) args.Add("--no-peak");
        else args.AddRange(["--peak-size", Inv(PeakSize)]);
        return args;
    }

    static string Inv(int v) => v.ToString(CultureInfo.InvariantCulture);

    /// <summary>Parses the flags of <see cref="Args"/> (the bench project's command line; the CLI has its own parser).</summary>
    public static BenchOptions Parse(IReadOnlyList<string> args)
    {
        var o = new BenchOptions();
        for (int i = 0; i < args.Count; i++)
        {
            string Next() => i + 1 < args.Count ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            int Int()
            {
                var flag = args[i];
                var v = Next();
                return int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) ? n : throw new ArgumentException($"{flag} '{v}' is not an integer");
            }
            o = args[i] switch
            {
                "--model" => o with { Model = Next() },
                "--r" => o with { R = Int() },
                "--rank" => o with { Rank = Int() },
                "--batch" => o with { Batch = Int() },
                "--precision" => o with { Precision = DistillSettings.ParseEnum<Precision>(Next(), "--precision") },
                "--steps" => o with { Steps = Int() },
                "--warmup" => o with { Warmup = Int() },
                "--threads" => o with { Threads = Int() },
                "--lanes" => o with { Lanes = Int() },
                "--data" => o with { Data = Next() },
                "--workers" => o with { Workers = Int() },
                "--seed" => o with { Seed = Int() },
                "--no-peak" => o with { MeasurePeak = false },
                "--peak-size" => o with { PeakSize = Int() },
                _ => throw new ArgumentException($"unknown option '{args[i]}'"),
            };
        }
        return o.Validate();
    }
}
