using System.Text.Json;
using System.Text.Json.Nodes;
using WeCoLoRA.Lora;
using WeCoLoRA.Models;
using static TorchSharp.torch;

namespace WeCoLoRA.Checkpoints;

/// <summary>
/// A model folder as this project writes it: model.safetensors (timm names) + config.json (timm hub style), and
/// for a student that keeps its adapters, adapter_model.safetensors (PEFT-style names, e.g.
/// blocks.0.attn.qkv.lora_A.q.weight) + adapter_config.json.
/// </summary>
public static class ModelFiles
{
    public const string Weights = "model.safetensors";
    public const string Config = "config.json";
    public const string AdapterWeights = "adapter_model.safetensors";
    public const string AdapterConfig = "adapter_config.json";

    /// <summary>Writes the model as it is (merged or not) into <paramref name="dir"/>, replacing the folder atomically.</summary>
    public static void Save(VisionTransformer model, string dir, LoraSpec? adapters = null, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var full = Path.GetFullPath(dir);
        var tmp = full + ".tmp";
        if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        Directory.CreateDirectory(tmp);
        var baseWeights = new List<KeyValuePair<string, Tensor>>();
        var adapterWeights = new List<KeyValuePair<string, Tensor>>();
        foreach (var (key, value) in model.state_dict())
        {
            if (IsAdapterKey(key)) adapterWeights.Add(new(key, value));
            else baseWeights.Add(new(key.Replace(".base_layer.", ".", StringComparison.Ordinal), value));
        }
        var meta = new Dictionary<string, string>(metadata ?? new Dictionary<string, string>()) { ["format"] = "pt" };
        SafeTensors.Save(Path.Combine(tmp, Weights), baseWeights, meta);
        WriteJson(Path.Combine(tmp, Config), ConfigFiles.ToTimmJson(model.Config));
        if (adapterWeights.Count > 0)
        {
            if (adapters is null) throw new ArgumentException("the model carries adapters: pass their LoraSpec to save adapter_config.json");
            SafeTensors.Save(Path.Combine(tmp, AdapterWeights), adapterWeights, meta);
            WriteJson(Path.Combine(tmp, AdapterConfig), new JsonObject
            {
                ["peft_type"] = "LORA",
                ["r"] = adapters.Rank,
                ["lora_alpha"] = adapters.Alpha,
                ["lora_dropout"] = 0.0,
                ["bias"] = "none",
                ["target_modules"] = new JsonArray([.. adapters.Targets.Select(t => (JsonNode)JsonValue.Create(t))]),
                ["fan_in_fan_out"] = false,
            });
        }
        // Swap in the new folder; the old one is removed only once the new one is complete.
        var old = full + ".old";
        if (Directory.Exists(old)) Directory.Delete(old, true);
        if (Directory.Exists(full)) Directory.Move(full, old);
        Directory.Move(tmp, full);
        if (Directory.Exists(old)) Directory.Delete(old, true);
    }

    public static bool IsAdapterKey(string key) => key.Contains(".lora_A.", StringComparison.Ordinal) || key.Contains(".lora_B.", StringComparison.Ordinal);

    /// <summary>Reads adapter_config.json next to a model's weights, or null when there is none.</summary>
    public static LoraSpec? ReadAdapterConfig(string dir)
    {
        var path = Path.Combine(dir, AdapterConfig);
        if (!File.Exists(path)) return null;
        try
        {
            var o = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
            var targets = o["target_modules"]!.AsArray().Select(n => n!.GetValue<string>()).ToList();
            return new LoraSpec(LoraSpec.ParseTargets(string.Join(",", targets)), o["r"]!.GetValue<int>(), o["lora_alpha"]!.GetValue<double>());
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or NullReferenceException or ArgumentException)
        {
            throw new CheckpointException($"{path}: not a valid LoRA adapter config ({e.Message}); it needs r, lora_alpha and target_modules");
        }
    }

    static void WriteJson(string path, JsonNode node) =>
        File.WriteAllText(path, node.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
}
