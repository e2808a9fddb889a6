using System.Text.Json;
using System.Text.Json.Serialization;
using WeCoLoRA.Data;

namespace WeCoLoRA.Distillation;

/// <summary>The distillation methods of the paper and its baselines.</summary>
public enum DistillMethod
{
    /// <summary>Weight copy + enhanced LoRA (q, k, v, proj, fc1, fc2); L1 on last-block tokens before the final norm.</summary>
    [JsonStringEnumMemberName("wecolora")]
    WeCoLoRA,
    /// <summary>Weight copy + standard LoRA on q and v; same loss.</summary>
    [JsonStringEnumMemberName("lora-qv")]
    LoraQv,
    /// <summary>Weight copy, every parameter trainable; L1 on the final-norm output of all tokens.</summary>
    [JsonStringEnumMemberName("weco-kd")]
    WecoKd,
    /// <summary>Random (timm) init of the student shape; same loss as WeCo+KD.</summary>
    [JsonStringEnumMemberName("kd-scratch")]
    KdScratch,
    /// <summary>Weight copy only, no training.</summary>
    [JsonStringEnumMemberName("weco")]
    Weco,
}

public enum Precision { [JsonStringEnumMemberName("fp32")] Fp32, [JsonStringEnumMemberName("bf16")] Bf16 }

/// <summary>Which teacher outputs the student is aligned to.</summary>
public enum Alignment
{
    /// <summary>The last block only.</summary>
    [JsonStringEnumMemberName("last")]
    Last,
    /// <summary>Also student block i against the last teacher block of its group (r·i + r − 1).</summary>
    [JsonStringEnumMemberName("blocks")]
    Blocks,
}

/// <summary>Every setting of a distillation run, resolved; written to RUN/config.json.</summary>
public sealed record DistillSettings
{
    public required string Teacher { get; init; }
    public required string Data { get; init; }
    public required string Out { get; init; }
    public DistillMethod Method { get; init; } = DistillMethod.WeCoLoRA;
    public double Ratio { get; init; } = 1.0;
    public int R { get; init; } = 2;
    /// <summary>Teacher block indices to keep; overrides <see cref="R"/> when set.</summary>
    public int[]? Keep { get; init; }
    public int Rank { get; init; } = 64;
    /// <summary>LoRA alpha; null means alpha = rank (scaling 1, as the release).</summary>
    public double? Alpha { get; init; }
    /// <summary>LoRA targets for <see cref="DistillMethod.WeCoLoRA"/>: "enhanced", "qv" or a comma list.</summary>
    public string Targets { get; init; } = "enhanced";
    public Alignment Align { get; init; } = Alignment.Last;
    public int Epochs { get; init; } = 10;
    public double WarmupEpochs { get; init; } = 2;
    public int BatchSize { get; init; } = 32;
    public int AccumIter { get; init; } = 1;
    /// <summary>Base learning rate; the absolute rate is blr × effective batch / 256 unless <see cref="Lr"/> is set.</summary>
    public double Blr { get; init; } = 1e-3;
    public double? Lr { get; init; }
    public double MinLr { get; init; }
    public double WeightDecay { get; init; } = 0.05;
    public int Seed { get; init; }
    public Precision Precision { get; init; } = Precision.Fp32;
    public bool NoAugment { get; init; }
    /// <summary>Where a --no-augment run keeps the teacher's targets after the first epoch; ignored with augmentation.</summary>
    public TeacherCacheMode TeacherCache { get; init; } = TeacherCacheMode.Auto;
    public int Workers { get; init; }
    /// <summary>Shards of each batch trained side by side, each on its share of the intra-op threads (0 = one per thread).</summary>
    public int Lanes { get; init; }
    /// <summary>Stop at the first unusable image instead of skipping it with a warning.</summary>
    public bool Strict { get; init; }
    /// <summary>Images with more pixels are refused (decompression bombs).</summary>
    public long MaxPixels { get; init; } = ImageDecoder.DefaultMaxPixels;

    public int EffectiveBatch => BatchSize * AccumIter;
    public double AbsoluteLr => Lr ?? Blr * EffectiveBatch / 256.0;
    public bool UsesLora => Method is DistillMethod.WeCoLoRA or DistillMethod.LoraQv;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first value out of range.</summary>
    public DistillSettings Validate()
    {
        Check(Ratio > 0 && Ratio <= 1, $"--ratio {Ratio} must be in (0, 1]");
        Check(Rank >= 1, $"--rank {Rank} must be at least 1");
        Check(Epochs >= 0, $"--epochs {Epochs} must be >= 0");
        Check(WarmupEpochs >= 0, $"--warmup-epochs {WarmupEpochs} must be >= 0");
        Check(BatchSize >= 1, $"--batch-size {BatchSize} must be at least 1");
        Check(AccumIter >= 1, $"--accum-iter {AccumIter} must be at least 1");
        Check(Blr > 0, $"--blr {Blr} must be positive");
        Check(Lr is null or > 0, $"--lr {Lr} must be positive");
        Check(MinLr >= 0, $"--min-lr {MinLr} must be >= 0");
        Check(Alpha is null or > 0, $"--alpha {Alpha} must be positive");
        Check(Workers >= 0, $"--workers {Workers} must be >= 0");
        Check(Lanes >= 0, $"--lanes {Lanes} must be >= 0");
        Check(MaxPixels > 0, $"--max-pixels {MaxPixels} must be positive");
        return this;
    }

    static void Check(bool ok, string message)
    {
        if (!ok) throw new ArgumentException(message);
    }

    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Converters = { new JsonStringEnumConverter() },
    };

    /// <summary>Parses a command-line enum value by its JSON name (e.g. "lora-qv"); the error lists the choices.</summary>
    public static T ParseEnum<T>(string value, string option) where T : struct, Enum
    {
        try
        {
            return JsonSerializer.Deserialize<T>(JsonSerializer.Serialize(value), Json);
        }
        catch (JsonException)
        {
            var choices = Enum.GetValues<T>().Select(v => JsonSerializer.Serialize(v, Json).Trim('"'));
            throw new ArgumentException($"{option} '{value}' unknown; use one of {string.Join(", ", choices)}");
        }
    }
}
