using System.Text.Json;
using System.Text.Json.Nodes;

namespace WeCoLoRA.Checkpoints;

/// <summary>Class names from a config.json: timm's pretrained_cfg.label_names (or a top-level label_names) or Hugging Face's id2label.</summary>
public static class LabelNames
{
    /// <summary>The <paramref name="numClasses"/> names in class order, or null when the file has none (or not that many).</summary>
    public static IReadOnlyList<string>? Read(string? configPath, int numClasses)
    {
        if (configPath is null || !File.Exists(configPath) || numClasses <= 0) return null;
        try
        {
            if (JsonNode.Parse(File.ReadAllText(configPath)) is not JsonObject root) return null;
            var list = (root["pretrained_cfg"] as JsonObject)?["label_names"] as JsonArray ?? root["label_names"] as JsonArray;
            if (list is not null)
                return list.Count == numClasses ? list.Select(n => n?.ToString() ?? "").ToList() : null;
            if (root["id2label"] is JsonObject map)
            {
                var names = new string[numClasses];
                foreach (var (key, value) in map)
                    if (int.TryParse(key, out var i) && i >= 0 && i < numClasses) names[i] = value?.ToString() ?? "";
                return names.All(n => n is not null) ? names : null;
            }
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            // A malformed config simply has no usable names; the loader reports real config errors.
        }
        return null;
    }
}
