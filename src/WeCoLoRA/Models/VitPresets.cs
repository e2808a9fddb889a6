namespace WeCoLoRA.Models;

/// <summary>timm's ViT family as named presets (vit_{size}_patch{p}_{img}).</summary>
public static class VitPresets
{
    // (embed_dim, depth, num_heads) as timm defines each size.
    static readonly Dictionary<string, (int Dim, int Depth, int Heads)> Sizes = new()
    {
        ["tiny"] = (192, 12, 3),
        ["small"] = (384, 12, 6),
        ["base"] = (768, 12, 12),
        ["large"] = (1024, 24, 16),
        ["huge"] = (1280, 32, 16),
    };

    // The (size, patch, img) combinations timm publishes.
    static readonly (string Size, int Patch, int Img)[] Published =
    [
        ("tiny", 16, 224), ("tiny", 16, 384),
        ("small", 8, 224), ("small", 16, 224), ("small", 16, 384), ("small", 32, 224), ("small", 32, 384),
        ("base", 8, 224), ("base", 16, 224), ("base", 16, 384), ("base", 32, 224), ("base", 32, 384),
        ("large", 14, 224), ("large", 16, 224), ("large", 16, 384), ("large", 32, 224), ("large", 32, 384),
        ("huge", 14, 224),
    ];

    public static IReadOnlyDictionary<string, VitConfig> All { get; } = Published.ToDictionary(
        p => $"vit_{p.Size}_patch{p.Patch}_{p.Img}",
        p => new VitConfig
        {
            Architecture = $"vit_{p.Size}_patch{p.Patch}_{p.Img}",
            ImgSize = p.Img,
            PatchSize = p.Patch,
            EmbedDim = Sizes[p.Size].Dim,
            Depth = Sizes[p.Size].Depth,
            NumHeads = Sizes[p.Size].Heads,
            CropPct = p.Img == 384 ? 1.0 : 0.9,
        });

    /// <summary>Looks a preset up by its timm name; a tag after a dot (".mae", ".augreg_in21k") is ignored.</summary>
    public static VitConfig Get(string name)
    {
        var bare = name.Split('.')[0];
        if (All.TryGetValue(bare, out var cfg)) return cfg;
        throw new ArgumentException($"unknown architecture '{name}'; known: {string.Join(", ", All.Keys.Order())}");
    }

    public static bool TryGet(string name, out VitConfig config)
    {
        config = null!;
        return All.TryGetValue(name.Split('.')[0], out config!);
    }

    /// <summary>num_heads for a checkpoint that does not say: timm's choice for that width, else 64-wide heads.</summary>
    public static int? HeadsForWidth(int embedDim)
    {
        foreach (var s in Sizes.Values)
            if (s.Dim == embedDim) return s.Heads;
        return embedDim % 64 == 0 ? embedDim / 64 : null;
    }
}
