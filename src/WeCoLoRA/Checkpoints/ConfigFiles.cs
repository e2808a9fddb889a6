using System.Collections.Immutable;
using System.Text.Json;
using System.Text.Json.Nodes;
using WeCoLoRA.Models;

namespace WeCoLoRA.Checkpoints;

/// <summary>Reads and writes the config.json files that sit next to published weights.</summary>
public static class ConfigFiles
{
    /// <summary>
    /// Applies a config.json (timm hub style or Hugging Face transformers' ViTConfig) on top of <paramref name="baseline"/>.
    /// </summary>
    public static VitConfig Apply(string path, VitConfig baseline)
    {
        var root = ReadObject(path);
        try
        {
            if (root["architecture"] is not null || root["pretrained_cfg"] is not null)
                return ApplyTimm(root, baseline);
            if (root["hidden_size"] is not null)
                return ApplyHuggingFace(root, baseline, Path.GetDirectoryName(Path.GetFullPath(path))!);
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or JsonException)
        {
            throw new CheckpointException($"{path}: a value has the wrong type ({e.Message})");
        }
        throw new CheckpointException($"{path}: neither a timm config (architecture, pretrained_cfg) nor a Hugging Face ViT config (hidden_size, num_hidden_layers)");
    }

    static JsonObject ReadObject(string path)
    {
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)) as JsonObject
                ?? throw new CheckpointException($"{path}: expected a JSON object");
        }
        catch (JsonException e)
        {
            throw new CheckpointException($"{path}: not valid JSON ({e.Message})");
        }
    }

    static VitConfig ApplyTimm(JsonObject root, VitConfig cfg)
    {
        if (root["architecture"]?.GetValue<string>() is { } arch)
            cfg = VitPresets.TryGet(arch, out var preset)
                ? preset with { Mean = cfg.Mean, Std = cfg.Std, CropPct = cfg.CropPct, Interpolation = cfg.Interpolation, NumClasses = cfg.NumClasses, GlobalPool = cfg.GlobalPool }
                : cfg with { Architecture = arch };
        if (root["model_args"] is JsonObject args)
        {
            cfg = cfg with
            {
                ImgSize = Int(args, "img_size") ?? cfg.ImgSize,
                PatchSize = Int(args, "patch_size") ?? cfg.PatchSize,
                InChans = Int(args, "in_chans") ?? cfg.InChans,
                EmbedDim = Int(args, "embed_dim") ?? cfg.EmbedDim,
                Depth = Int(args, "depth") ?? cfg.Depth,
                NumHeads = Int(args, "num_heads") ?? cfg.NumHeads,
                MlpRatio = args["mlp_ratio"]?.GetValue<double>() ?? cfg.MlpRatio,
                QkvBias = args["qkv_bias"]?.GetValue<bool>() ?? cfg.QkvBias,
                NumClasses = Int(args, "num_classes") ?? cfg.NumClasses,
                GlobalPool = Pool(args["global_pool"]?.GetValue<string>()) ?? cfg.GlobalPool,
            };
        }
        cfg = cfg with
        {
            NumClasses = Int(root, "num_classes") ?? cfg.NumClasses,
            GlobalPool = Pool(root["global_pool"]?.GetValue<string>()) ?? cfg.GlobalPool,
        };
        if (root["pretrained_cfg"] is JsonObject pre)
        {
            if (pre["input_size"] is JsonArray size && size.Count == 3)
                cfg = cfg with { InChans = size[0]!.GetValue<int>(), ImgSize = size[2]!.GetValue<int>() };
            cfg = cfg with
            {
                Mean = Floats(pre["mean"]) ?? cfg.Mean,
                Std = Floats(pre["std"]) ?? cfg.Std,
                CropPct = pre["crop_pct"]?.GetValue<double>() ?? cfg.CropPct,
                Interpolation = pre["interpolation"]?.GetValue<string>() ?? cfg.Interpolation,
            };
        }
        return cfg;
    }

    static VitConfig ApplyHuggingFace(JsonObject root, VitConfig cfg, string dir)
    {
        int hidden = Int(root, "hidden_size") ?? cfg.EmbedDim;
        bool classifier = root["architectures"] is JsonArray a && a.Any(n => n?.GetValue<string>() == "ViTForImageClassification");
        cfg = cfg with
        {
            EmbedDim = hidden,
            Depth = Int(root, "num_hidden_layers") ?? cfg.Depth,
            NumHeads = Int(root, "num_attention_heads") ?? cfg.NumHeads,
            MlpRatio = (Int(root, "intermediate_size") ?? (int)(hidden * cfg.MlpRatio)) / (double)hidden,
            PatchSize = Int(root, "patch_size") ?? cfg.PatchSize,
            ImgSize = Int(root, "image_size") ?? cfg.ImgSize,
            InChans = Int(root, "num_channels") ?? cfg.InChans,
            LayerNormEps = root["layer_norm_eps"]?.GetValue<double>() ?? cfg.LayerNormEps,
            QkvBias = root["qkv_bias"]?.GetValue<bool>() ?? true,
            NumClasses = classifier ? (root["id2label"] as JsonObject)?.Count ?? cfg.NumClasses : 0,
            GlobalPool = GlobalPool.Token,
        };
        // The image processor's settings live in a second file next to config.json.
        var pre = Path.Combine(dir, "preprocessor_config.json");
        if (File.Exists(pre))
        {
            var p = ReadObject(pre);
            cfg = cfg with
            {
                Mean = Floats(p["image_mean"]) ?? cfg.Mean,
                Std = Floats(p["image_std"]) ?? cfg.Std,
                // PIL resample codes: 2 bilinear, 3 bicubic. HF resizes straight to the square: no crop.
                Interpolation = Int(p, "resample") switch { 3 => "bicubic", 2 => "bilinear", 0 => "nearest", _ => cfg.Interpolation },
                CropPct = 1.0,
            };
        }
        return cfg;
    }

    static int? Int(JsonObject o, string key) => o[key]?.GetValue<int>();

    static GlobalPool? Pool(string? s) => s switch
    {
        null => null,
        "token" => GlobalPool.Token,
        "avg" => GlobalPool.Avg,
        _ => throw new CheckpointException($"global_pool '{s}' is not supported (use 'token' or 'avg')"),
    };

    static ImmutableArray<float>? Floats(JsonNode? n) =>
        n is JsonArray a ? a.Select(v => v!.GetValue<float>()).ToImmutableArray() : null;

    /// <summary>timm hub style config.json: timm.create_model(architecture, **model_args) rebuilds the model.</summary>
    public static JsonObject ToTimmJson(VitConfig cfg) => new()
    {
        ["architecture"] = cfg.Architecture,
        ["num_classes"] = cfg.NumClasses,
        ["num_features"] = cfg.EmbedDim,
        ["global_pool"] = cfg.GlobalPool == GlobalPool.Avg ? "avg" : "token",
        ["model_args"] = new JsonObject
        {
            ["img_size"] = cfg.ImgSize,
            ["patch_size"] = cfg.PatchSize,
            ["in_chans"] = cfg.InChans,
            ["embed_dim"] = cfg.EmbedDim,
            ["depth"] = cfg.Depth,
            ["num_heads"] = cfg.NumHeads,
            ["mlp_ratio"] = cfg.MlpRatio,
            ["qkv_bias"] = cfg.QkvBias,
            ["num_classes"] = cfg.NumClasses,
            ["global_pool"] = cfg.GlobalPool == GlobalPool.Avg ? "avg" : "token",
        },
        ["pretrained_cfg"] = new JsonObject
        {
            ["input_size"] = new JsonArray(cfg.InChans, cfg.ImgSize, cfg.ImgSize),
            ["interpolation"] = cfg.Interpolation,
            ["crop_pct"] = cfg.CropPct,
            ["crop_mode"] = "center",
            ["mean"] = new JsonArray(cfg.Mean.Select(v => (JsonNode)JsonValue.Create(v)).ToArray()),
            ["std"] = new JsonArray(cfg.Std.Select(v => (JsonNode)JsonValue.Create(v)).ToArray()),
            ["num_classes"] = cfg.NumClasses,
            ["first_conv"] = "patch_embed.proj",
            ["classifier"] = "head",
        },
    };
}
