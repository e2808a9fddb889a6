using System.Text.RegularExpressions;
using static TorchSharp.torch;

namespace WeCoLoRA.Checkpoints;

/// <summary>The naming a checkpoint came with; everything is mapped into timm's names at the loading edge.</summary>
public enum CheckpointFormat { Timm, HuggingFace, TorchVision }

/// <summary>Maps Hugging Face transformers and torchvision ViT state dicts into timm's parameter names.</summary>
public static partial class KeyMaps
{
    public static CheckpointFormat Detect(IReadOnlyDictionary<string, Tensor> sd)
    {
        if (sd.Keys.Any(k => k.StartsWith("vit.embeddings.", StringComparison.Ordinal) || k.StartsWith("embeddings.patch_embeddings.", StringComparison.Ordinal)))
            return CheckpointFormat.HuggingFace;
        if (sd.ContainsKey("conv_proj.weight") || sd.ContainsKey("class_token"))
            return CheckpointFormat.TorchVision;
        return CheckpointFormat.Timm;
    }

    /// <summary>
    /// Returns a new dictionary in timm names (the input's tensors are moved into it, or disposed when fused or
    /// dropped). Keys that only training used (MAE's decoder and mask token, HF's pooler) are dropped.
    /// </summary>
    public static Dictionary<string, Tensor> ToTimm(Dictionary<string, Tensor> sd, CheckpointFormat format)
    {
        // DistributedDataParallel wraps every name in "module."
        if (sd.Count > 0 && sd.Keys.All(k => k.StartsWith("module.", StringComparison.Ordinal)))
            sd = sd.ToDictionary(kv => kv.Key["module.".Length..], kv => kv.Value);
        var mapped = format switch
        {
            CheckpointFormat.HuggingFace => FromHuggingFace(sd),
            CheckpointFormat.TorchVision => FromTorchVision(sd),
            _ => new Dictionary<string, Tensor>(sd),
        };
        foreach (var key in mapped.Keys.Where(IsTrainingOnly).ToList())
        {
            mapped[key].Dispose();
            mapped.Remove(key);
        }
        return mapped;
    }

    static bool IsTrainingOnly(string key) =>
        key == "mask_token" || key.StartsWith("decoder_", StringComparison.Ordinal) || key.StartsWith("pooler.", StringComparison.Ordinal);

    static Dictionary<string, Tensor> FromHuggingFace(Dictionary<string, Tensor> sd)
    {
        var outDict = new Dictionary<string, Tensor>();
        var qkvParts = new Dictionary<string, Tensor[]>();
        foreach (var (rawKey, value) in sd)
        {
            var key = rawKey.StartsWith("vit.", StringComparison.Ordinal) ? rawKey[4..] : rawKey;
            var m = HfQkv().Match(key);
            if (m.Success)
            {
                // query/key/value are fused into timm's qkv in that order along the output dimension.
                var target = $"blocks.{m.Groups[1].Value}.attn.qkv.{m.Groups[3].Value}";
                var parts = qkvParts.TryGetValue(target, out var p) ? p : qkvParts[target] = new Tensor[3];
                parts[m.Groups[2].Value switch { "query" => 0, "key" => 1, _ => 2 }] = value;
                continue;
            }
            outDict[MapHfKey(key)] = value;
        }
        foreach (var (target, parts) in qkvParts)
        {
            if (parts.Any(t => t is null))
                throw new CheckpointException($"Hugging Face checkpoint lacks one of query/key/value for '{target}'");
            outDict[target] = cat(parts, 0);
            foreach (var t in parts) t.Dispose();
        }
        return outDict;
    }

    static string MapHfKey(string key)
    {
        string[] simple =
        [
            "embeddings.cls_token", "cls_token",
            "embeddings.position_embeddings", "pos_embed",
            "embeddings.patch_embeddings.projection.", "patch_embed.proj.",
            "layernorm.", "norm.",
            "classifier.", "head.",
        ];
        for (int i = 0; i < simple.Length; i += 2)
            if (key.StartsWith(simple[i], StringComparison.Ordinal))
                return simple[i + 1] + key[simple[i].Length..];
        var m = HfLayer().Match(key);
        if (!m.Success) return key; // left for the strict check to report
        var inner = m.Groups[2].Value switch
        {
            "layernorm_before" => "norm1",
            "layernorm_after" => "norm2",
            "attention.output.dense" => "attn.proj",
            "intermediate.dense" => "mlp.fc1",
            "output.dense" => "mlp.fc2",
            var other => other,
        };
        return $"blocks.{m.Groups[1].Value}.{inner}.{m.Groups[3].Value}";
    }

    static Dictionary<string, Tensor> FromTorchVision(Dictionary<string, Tensor> sd)
    {
        var outDict = new Dictionary<string, Tensor>();
        foreach (var (key, value) in sd)
        {
            var m = TvLayer().Match(key);
            string mapped;
            if (m.Success)
            {
                var inner = m.Groups[2].Value switch
                {
                    "ln_1.weight" => "norm1.weight",
                    "ln_1.bias" => "norm1.bias",
                    "ln_2.weight" => "norm2.weight",
                    "ln_2.bias" => "norm2.bias",
                    "self_attention.in_proj_weight" => "attn.qkv.weight",
                    "self_attention.in_proj_bias" => "attn.qkv.bias",
                    "self_attention.out_proj.weight" => "attn.proj.weight",
                    "self_attention.out_proj.bias" => "attn.proj.bias",
                    "mlp.0.weight" or "mlp.linear_1.weight" => "mlp.fc1.weight",
                    "mlp.0.bias" or "mlp.linear_1.bias" => "mlp.fc1.bias",
                    "mlp.3.weight" or "mlp.linear_2.weight" => "mlp.fc2.weight",
                    "mlp.3.bias" or "mlp.linear_2.bias" => "mlp.fc2.bias",
                    var other => other,
                };
                mapped = $"blocks.{m.Groups[1].Value}.{inner}";
            }
            else
            {
                mapped = key switch
                {
                    "class_token" => "cls_token",
                    "conv_proj.weight" => "patch_embed.proj.weight",
                    "conv_proj.bias" => "patch_embed.proj.bias",
                    "encoder.pos_embedding" => "pos_embed",
                    "encoder.ln.weight" => "norm.weight",
                    "encoder.ln.bias" => "norm.bias",
                    "heads.head.weight" => "head.weight",
                    "heads.head.bias" => "head.bias",
                    _ => key,
                };
            }
            outDict[mapped] = value;
        }
        return outDict;
    }

    [GeneratedRegex(@"^encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)$")]
    private static partial Regex HfQkv();

    [GeneratedRegex(@"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$")]
    private static partial Regex HfLayer();

    [GeneratedRegex(@"^encoder\.layers\.encoder_layer_(\d+)\.(.+)$")]
    private static partial Regex TvLayer();
}
