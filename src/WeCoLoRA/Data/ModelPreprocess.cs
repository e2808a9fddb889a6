using WeCoLoRA.Models;

namespace WeCoLoRA.Data;

public static class ModelPreprocess
{
    /// <summary>The preprocessing a model's config names (input size, crop_pct, mean, std, interpolation).</summary>
    public static Preprocess For(VitConfig cfg, double? cropPct = null)
    {
        var interpolation = cfg.Interpolation switch
        {
            "bicubic" => Interpolation.Bicubic,
            "bilinear" => Interpolation.Bilinear,
            "nearest" => Interpolation.Nearest,
            var other => throw new ArgumentException($"interpolation '{other}' is not supported (bicubic, bilinear, nearest)"),
        };
        if (cropPct is <= 0 or > 1) throw new ArgumentException($"--crop-pct {cropPct} must be in (0, 1]");
        return new Preprocess(cfg.ImgSize, cropPct ?? cfg.CropPct, [.. cfg.Mean], [.. cfg.Std], interpolation);
    }
}
