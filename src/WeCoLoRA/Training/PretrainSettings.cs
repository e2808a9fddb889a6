using System.Globalization;
using System.Text.Json;
using WeCoLoRA.Distillation;
using WeCoLoRA.Models;

namespace WeCoLoRA.Training;

/// <summary>Every setting of a supervised training run (from scratch or fine-tuning), resolved; written to RUN/config.json.</summary>
public sealed record PretrainSettings
{
    /// <summary>Labelled training data: any <see cref="Data.DatasetSource"/> spec.</summary>
    public required string Data { get; init; }
    /// <summary>Optional labelled test data, evaluated once at the end.</summary>
    public string? Test { get; init; }
    public required string Out { get; init; }
    /// <summary>timm preset the architecture starts from.</summary>
    public string? Arch { get; init; }
    /// <summary>timm model_args as "k=v,…" (img_size, patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio, qkv_bias, global_pool).</summary>
    public string? ModelArgs { get; init; }
    /// <summary>A checkpoint to fine-tune instead of a random init (its head is replaced when the class count differs).</summary>
    public string? Init { get; init; }
    public int Epochs { get; init; } = 10;
    public double WarmupEpochs { get; init; } = 1;
    public int BatchSize { get; init; } = 128;
    /// <summary>Base learning rate; the absolute rate is blr × batch / 256 unless <see cref="Lr"/> is set.</summary>
    public double Blr { get; init; } = 1e-3;
    public double? Lr { get; init; }
    public double MinLr { get; init; }
    public double WeightDecay { get; init; } = 0.05;
    public double LabelSmoothing { get; init; } = 0.1;
    public double Beta2 { get; init; } = 0.999;
    /// <summary>Random crop with this padding + flip instead of RandomResizedCrop + flip (for small images).</summary>
    public int? CropPadding { get; init; }
    /// <summary>Normalization mean/std per channel; null = measured on the training images (or the --init model's).</summary>
    public float[]? Mean { get; init; }
    public float[]? Std { get; init; }
    /// <summary>Use at most this many training images (evenly spaced, so every class stays represented).</summary>
    public int? Limit { get; init; }
    public int Seed { get; init; }
    public int Workers { get; init; }

    public double AbsoluteLr => Lr ?? Blr * BatchSize / 256.0;

    public PretrainSettings Validate()
    {
        Check(Epochs >= 1, $"--epochs {Epochs} must be at least 1");
        Check(WarmupEpochs >= 0, $"--warmup-epochs {WarmupEpochs} must be >= 0");
        Check(BatchSize >= 1, $"--batch-size {BatchSize} must be at least 1");
        Check(Blr > 0, $"--blr {Blr} must be positive");
        Check(Lr is null or > 0, $"--lr {Lr} must be positive");
        Check(MinLr >= 0, $"--min-lr {MinLr} must be >= 0");
        Check(WeightDecay >= 0, $"--weight-decay {WeightDecay} must be >= 0");
        Check(LabelSmoothing is >= 0 and < 1, $"--label-smoothing {LabelSmoothing} must be in [0, 1)");
        Check(Beta2 is > 0 and < 1, $"--beta2 {Beta2} must be in (0, 1)");
        Check(CropPadding is null or >= 0, $"--crop-padding {CropPadding} must be >= 0");
        Check(Limit is null or >= 1, $"--limit {Limit} must be at least 1");
        Check(Workers >= 0, $"--workers {Workers} must be >= 0");
        Check(Init is not null || Arch is not null || ModelArgs is not null, "give the architecture (--arch PRESET and/or --model-args k=v,…) or a model to fine-tune (--init MODEL)");
        Check(Init is null || (Arch is null && ModelArgs is null), "--init takes the architecture from the model; drop --arch/--model-args");
        Check(Mean is null || Std is null || Mean.Length == Std.Length, "--mean and --std need the same number of values");
        Check(Std is null || Std.All(v => v > 0), "--std values must be positive");
        if (Init is null) Architecture(); // reports bad --arch/--model-args up front
        return this;
    }

    /// <summary>The architecture for a from-scratch run: the preset (or timm's ViT-B/16 defaults), then model_args.</summary>
    public VitConfig Architecture()
    {
        var cfg = Arch is null ? new VitConfig() : VitPresets.Get(Arch);
        if (ModelArgs is null) return cfg.Validate();
        foreach (var pair in ModelArgs.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            int eq = pair.IndexOf('=');
            if (eq <= 0) throw new ArgumentException($"--model-args '{pair}' must be key=value");
            string key = pair[..eq].Trim(), value = pair[(eq + 1)..].Trim();
            int Int() => int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v
                : throw new ArgumentException($"--model-args {key}={value}: not an integer");
            cfg = key switch
            {
                "img_size" => cfg with { ImgSize = Int() },
                "patch_size" => cfg with { PatchSize = Int() },
                "in_chans" => cfg with { InChans = Int() },
                "embed_dim" => cfg with { EmbedDim = Int() },
                "depth" => cfg with { Depth = Int() },
                "num_heads" => cfg with { NumHeads = Int() },
                "mlp_ratio" => cfg with
                {
                    MlpRatio = double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) ? d
                        : throw new ArgumentException($"--model-args mlp_ratio={value}: not a number"),
                },
                "qkv_bias" => cfg with
                {
                    QkvBias = bool.TryParse(value, out var b) ? b : throw new ArgumentException($"--model-args qkv_bias={value}: use true or false"),
                },
                "global_pool" => cfg with
                {
                    GlobalPool = value switch
                    {
                        "token" => GlobalPool.Token,
                        "avg" => GlobalPool.Avg,
                        _ => throw new ArgumentException($"--model-args global_pool={value}: use token or avg"),
                    },
                },
                "architecture" => cfg with { Architecture = value },
                _ => throw new ArgumentException($"--model-args key '{key}' unknown; use img_size, patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio, qkv_bias, global_pool, architecture"),
            };
        }
        if (cfg.InChans != cfg.Mean.Length) cfg = cfg with { Mean = [.. Enumerable.Repeat(0.5f, cfg.InChans)], Std = [.. Enumerable.Repeat(0.5f, cfg.InChans)] };
        if (Arch is null && !ModelArgs.Contains("architecture=", StringComparison.Ordinal))
            cfg = cfg with { Architecture = $"vit_custom_patch{cfg.PatchSize}_{cfg.ImgSize}" };
        return cfg.Validate();
    }

    static void Check(bool ok, string message)
    {
        if (!ok) throw new ArgumentException(message);
    }

    public static JsonSerializerOptions Json => DistillSettings.Json;
}
