using TorchSharp;
using WeCoLoRA.Lora;
using WeCoLoRA.Models;
using static TorchSharp.torch;

namespace WeCoLoRA.Checkpoints;

/// <summary>Overrides for checkpoints whose files do not say everything (raw state dicts carry no num_heads).</summary>
public sealed record LoadOptions
{
    /// <summary>A timm preset name (e.g. vit_base_patch16_224) that replaces any config file.</summary>
    public string? Arch { get; init; }
    /// <summary>Run the model at this resolution; position embeddings are resampled (bicubic) to the new grid.</summary>
    public int? ImgSize { get; init; }
    public int? NumHeads { get; init; }
}

/// <param name="Adapters">The LoRA adapters the model carries unmerged (a distilled student), or null.</param>
public sealed record LoadedModel(VisionTransformer Model, string WeightsPath, CheckpointFormat Format, IReadOnlyList<string> Notes, LoraSpec? Adapters)
{
    public VitConfig Config => Model.Config;
}

/// <summary>Where a MODEL argument's weights and config are.</summary>
public sealed record ModelSource(string WeightsPath, string? ConfigPath)
{
    static readonly string[] WeightFileNames = ["model.safetensors", "pytorch_model.bin", "model.pth"];

    public static ModelSource Resolve(string model)
    {
        if (File.Exists(model))
        {
            // Only hub-layout file names imply that a config.json beside them describes them.
            var dir = Path.GetDirectoryName(Path.GetFullPath(model))!;
            var cfg = Path.Combine(dir, "config.json");
            bool hubName = WeightFileNames.Contains(Path.GetFileName(model));
            return new ModelSource(model, hubName && File.Exists(cfg) ? cfg : null);
        }
        if (Directory.Exists(model))
        {
            // A run folder stands for its latest student.
            var student = Path.Combine(model, "student");
            if (Directory.Exists(student) && !WeightFileNames.Any(n => File.Exists(Path.Combine(model, n))))
                model = student;
            foreach (var name in WeightFileNames)
            {
                var w = Path.Combine(model, name);
                if (File.Exists(w))
                {
                    var cfg = Path.Combine(model, "config.json");
                    return new ModelSource(w, File.Exists(cfg) ? cfg : null);
                }
            }
            throw new CheckpointException($"model folder '{model}' holds none of {string.Join(", ", WeightFileNames)}; point --model at a checkpoint file or a folder with one of them");
        }
        throw new CheckpointException($"model '{model}' not found: give a checkpoint file (.safetensors, .pth, .bin) or a folder holding model.safetensors or pytorch_model.bin");
    }
}

public static class ModelLoader
{
    public static LoadedModel Load(string model, LoadOptions? options = null)
    {
        options ??= new LoadOptions();
        var source = ModelSource.Resolve(model);
        var raw = StateDictFile.Load(source.WeightsPath);
        var format = KeyMaps.Detect(raw);
        var sd = KeyMaps.ToTimm(raw, format);
        try
        {
            var notes = new List<string>();
            var config = ResolveConfig(sd, format, source, options, notes);
            var vit = new VisionTransformer(config);
            ResamplePosEmbed(sd, config, notes);
            LoadStrict(vit, sd, source.WeightsPath);
            var adapters = LoadAdapters(vit, Path.GetDirectoryName(Path.GetFullPath(source.WeightsPath))!);
            vit.eval();
            return new LoadedModel(vit, source.WeightsPath, format, notes, adapters);
        }
        finally
        {
            foreach (var t in sd.Values) t.Dispose();
        }
    }

    /// <summary>Injects and loads the adapters of an unmerged student folder (adapter_config.json + adapter_model.safetensors).</summary>
    static LoraSpec? LoadAdapters(VisionTransformer vit, string dir)
    {
        if (ModelFiles.ReadAdapterConfig(dir) is not { } spec) return null;
        var path = Path.Combine(dir, ModelFiles.AdapterWeights);
        if (!File.Exists(path))
            throw new CheckpointException($"{dir}: has {ModelFiles.AdapterConfig} but no {ModelFiles.AdapterWeights}; export the student again");
        spec.Inject(vit);
        var weights = SafeTensors.Load(path);
        try
        {
            LoadStrict(vit, weights, path, ModelFiles.IsAdapterKey);
        }
        finally
        {
            foreach (var t in weights.Values) t.Dispose();
        }
        return spec;
    }

    /// <summary>The architecture the weights imply, then the config file, then the caller's overrides.</summary>
    static VitConfig ResolveConfig(Dictionary<string, Tensor> sd, CheckpointFormat format, ModelSource source, LoadOptions options, List<string> notes)
    {
        var inferred = InferFromWeights(sd, format, source.WeightsPath, out bool headsGuessed);
        VitConfig cfg;
        if (options.Arch is not null)
        {
            // Facts of the weights (head width, pooling) stay; the preset supplies the rest.
            cfg = VitPresets.Get(options.Arch) with { NumClasses = inferred.NumClasses, GlobalPool = inferred.GlobalPool, Mean = inferred.Mean, Std = inferred.Std };
        }
        else if (source.ConfigPath is not null)
        {
            cfg = ConfigFiles.Apply(source.ConfigPath, inferred);
        }
        else
        {
            cfg = inferred;
            if (headsGuessed && options.NumHeads is null)
                notes.Add($"num_heads={cfg.NumHeads} assumed from embed_dim {cfg.EmbedDim} (timm convention); the checkpoint has no config: pass --arch or --num-heads if that is wrong");
        }
        if (options.NumHeads is { } heads) cfg = cfg with { NumHeads = heads };
        if (options.ImgSize is { } size) cfg = cfg with { ImgSize = size };
        try
        {
            return cfg.Validate();
        }
        catch (ArgumentException e)
        {
            throw new CheckpointException($"{source.ConfigPath ?? source.WeightsPath}: {e.Message}");
        }
    }

    /// <summary>Reads the architecture off the tensor shapes (timm names).</summary>
    static VitConfig InferFromWeights(Dictionary<string, Tensor> sd, CheckpointFormat format, string path, out bool headsGuessed)
    {
        Tensor Need(string key) => sd.TryGetValue(key, out var t) ? t
            : throw new CheckpointException($"{path}: key '{key}' missing; this does not look like a ViT checkpoint (format read as {format})");
        var conv = Need("patch_embed.proj.weight");
        int dim = (int)conv.shape[0], inChans = (int)conv.shape[1], patch = (int)conv.shape[3];
        int tokens = (int)Need("pos_embed").shape[1] - 1;
        int grid = (int)Math.Round(Math.Sqrt(tokens));
        if (grid * grid != tokens)
            throw new CheckpointException($"{path}: pos_embed has {tokens} patch tokens, not a square grid (only class-token ViTs with square grids are supported)");
        int depth = 0;
        while (sd.ContainsKey($"blocks.{depth}.norm1.weight")) depth++;
        int hidden = sd.TryGetValue("blocks.0.mlp.fc1.weight", out var fc1) ? (int)fc1.shape[0] : dim * 4;
        var heads = VitPresets.HeadsForWidth(dim);
        headsGuessed = true;
        var cfg = new VitConfig
        {
            Architecture = VitPresets.All.Values.FirstOrDefault(p => p.EmbedDim == dim && p.Depth == depth && p.PatchSize == patch && p.ImgSize == grid * patch)?.Architecture
                ?? $"vit_base_patch{patch}_{grid * patch}",
            ImgSize = grid * patch,
            PatchSize = patch,
            InChans = inChans,
            EmbedDim = dim,
            Depth = Math.Max(depth, 1),
            NumHeads = heads ?? 1,
            MlpRatio = hidden / (double)dim,
            QkvBias = sd.ContainsKey("blocks.0.attn.qkv.bias"),
            GlobalPool = sd.ContainsKey("fc_norm.weight") ? GlobalPool.Avg : GlobalPool.Token,
            NumClasses = sd.TryGetValue("head.weight", out var head) ? (int)head.shape[0] : 0,
            Mean = inChans == 3 ? VitConfig.ImageNetMean : [.. Enumerable.Repeat(0.5f, inChans)],
            Std = inChans == 3 ? VitConfig.ImageNetStd : [.. Enumerable.Repeat(0.5f, inChans)],
        };
        return format switch
        {
            // torchvision's ViT weights are evaluated with Resize(256, bilinear) + CenterCrop(224).
            CheckpointFormat.TorchVision => cfg with { CropPct = 0.875, Interpolation = "bilinear" },
            // HF's image processor defaults: mean = std = 0.5, bilinear, resize straight to the square.
            CheckpointFormat.HuggingFace => cfg with { Mean = [0.5f, 0.5f, 0.5f], Std = [0.5f, 0.5f, 0.5f], CropPct = 1.0, Interpolation = "bilinear", LayerNormEps = 1e-12 },
            _ => cfg,
        };
    }

    /// <summary>timm's resample_abs_pos_embed: bicubic (antialiased) on the patch grid, class token kept.</summary>
    static void ResamplePosEmbed(Dictionary<string, Tensor> sd, VitConfig cfg, List<string> notes)
    {
        if (!sd.TryGetValue("pos_embed", out var pe) || pe.dim() != 3 || pe.shape[1] == cfg.NumPatches + 1) return;
        long oldGrid = (long)Math.Round(Math.Sqrt(pe.shape[1] - 1));
        if (oldGrid * oldGrid != pe.shape[1] - 1) return; // the strict check reports the shape
        using var scope = NewDisposeScope();
        var dim = pe.shape[2];
        var prefix = pe[.., ..1];
        var grid = pe[.., 1..].to(float32).reshape(1, oldGrid, oldGrid, dim).permute(0, 3, 1, 2);
        var resized = nn.functional.interpolate(grid, [cfg.GridSize, cfg.GridSize], mode: InterpolationMode.Bicubic, align_corners: false, antialias: true);
        var result = cat([prefix.to(float32), resized.permute(0, 2, 3, 1).reshape(1, -1, dim)], 1).MoveToOuterDisposeScope();
        pe.Dispose();
        sd["pos_embed"] = result;
        notes.Add($"pos_embed resampled from a {oldGrid}x{oldGrid} to a {cfg.GridSize}x{cfg.GridSize} grid (bicubic)");
    }

    /// <summary>
    /// Copies <paramref name="sd"/> into <paramref name="model"/>, converting dtypes; every missing, unexpected or
    /// shape-mismatched key is reported in one error (TorchSharp's load_state_dict checks no shapes).
    /// </summary>
    public static void LoadStrict(nn.Module model, IReadOnlyDictionary<string, Tensor> sd, string source, Func<string, bool>? keys = null)
    {
        var expected = model.state_dict().Where(kv => keys?.Invoke(kv.Key) ?? true).ToDictionary();
        var missing = expected.Keys.Where(k => !sd.ContainsKey(k)).ToList();
        var unexpected = sd.Keys.Where(k => !expected.ContainsKey(k)).Order(StringComparer.Ordinal).ToList();
        var mismatched = expected.Where(kv => sd.TryGetValue(kv.Key, out var t) && !t.shape.SequenceEqual(kv.Value.shape))
            .Select(kv => $"{kv.Key} (checkpoint [{string.Join(",", sd[kv.Key].shape)}], model [{string.Join(",", kv.Value.shape)}])").ToList();
        if (missing.Count + unexpected.Count + mismatched.Count > 0)
        {
            var parts = new List<string>();
            if (missing.Count > 0) parts.Add($"missing {Few(missing)}");
            if (unexpected.Count > 0) parts.Add($"unexpected {Few(unexpected)}");
            if (mismatched.Count > 0) parts.Add($"shape mismatch {Few(mismatched)}");
            throw new CheckpointException($"{source}: does not fit the model ({string.Join("; ", parts)}); check the architecture (--arch, config.json) or the file");
        }
        using var _ = no_grad();
        foreach (var (key, target) in expected)
            target.copy_(sd[key]);
    }

    static string Few(List<string> keys) =>
        string.Join(", ", keys.Take(6)) + (keys.Count > 6 ? $" and {keys.Count - 6} more" : "");
}
