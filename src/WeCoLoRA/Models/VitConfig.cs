using System.Collections.Immutable;

namespace WeCoLoRA.Models;

/// <summary>How the pooled feature is formed from the last block's tokens (timm's global_pool).</summary>
public enum GlobalPool { Token, Avg }

/// <summary>
/// The one description of a timm-style ViT: architecture plus the preprocessing it was trained with.
/// Immutable; derive variants with <c>with</c>.
/// </summary>
public sealed record VitConfig
{
    public string Architecture { get; init; } = "vit_base_patch16_224";
    public int ImgSize { get; init; } = 224;
    public int PatchSize { get; init; } = 16;
    public int InChans { get; init; } = 3;
    public int EmbedDim { get; init; } = 768;
    public int Depth { get; init; } = 12;
    public int NumHeads { get; init; } = 12;
    public double MlpRatio { get; init; } = 4.0;
    public bool QkvBias { get; init; } = true;
    public double LayerNormEps { get; init; } = 1e-6;
    public GlobalPool GlobalPool { get; init; } = GlobalPool.Token;
    public int NumClasses { get; init; } = 1000;
    public ImmutableArray<float> Mean { get; init; } = ImageNetMean;
    public ImmutableArray<float> Std { get; init; } = ImageNetStd;
    public double CropPct { get; init; } = 0.9;
    public string Interpolation { get; init; } = "bicubic";

    public static readonly ImmutableArray<float> ImageNetMean = [0.485f, 0.456f, 0.406f];
    public static readonly ImmutableArray<float> ImageNetStd = [0.229f, 0.224f, 0.225f];

    public int GridSize => ImgSize / PatchSize;
    public int NumPatches => GridSize * GridSize;
    public int MlpHidden => (int)(EmbedDim * MlpRatio);
    public int HeadDim => EmbedDim / NumHeads;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first inconsistent value.</summary>
    public VitConfig Validate()
    {
        Require(PatchSize > 0, $"patch_size {PatchSize} must be positive");
        Require(ImgSize > 0 && ImgSize % PatchSize == 0, $"img_size {ImgSize} must be a positive multiple of patch_size {PatchSize}");
        Require(EmbedDim > 0 && NumHeads > 0 && EmbedDim % NumHeads == 0, $"embed_dim {EmbedDim} must be divisible by num_heads {NumHeads}");
        Require(Depth >= 1, $"depth {Depth} must be at least 1");
        Require(InChans >= 1, $"in_chans {InChans} must be at least 1");
        Require(NumClasses >= 0, $"num_classes {NumClasses} must be >= 0");
        Require(MlpRatio > 0, $"mlp_ratio {MlpRatio} must be positive");
        Require(Mean.Length == InChans && Std.Length == InChans, $"mean/std need {InChans} values (one per input channel)");
        Require(CropPct > 0 && CropPct <= 1, $"crop_pct {CropPct} must be in (0, 1]");
        return this;
    }

    static void Require(bool ok, string message)
    {
        if (!ok) throw new ArgumentException(message);
    }
}
