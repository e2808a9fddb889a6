using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using WeCoLoRA.Checkpoints;
using WeCoLoRA.Data;
using WeCoLoRA.Models;
using static TorchSharp.torch;

namespace WeCoLoRA.Evaluation;

/// <summary>
/// Extracted features on disk, keyed by what determines them: the model's weights (a hash of every state-dict tensor, so
/// adapters and resampled position embeddings count), the samples (paths, labels, file sizes and modification times, or
/// the in-memory source's files), the preprocessing and the feature kind. Files are <c>DIR/features-&lt;key&gt;.safetensors</c>.
/// </summary>
public static class FeatureCache
{
    /// <summary>The cache key (64 hex digits).</summary>
    public static string Key(VisionTransformer model, IReadOnlyList<ImageItem> items, Preprocess preprocess, FeatureKind kind)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        void Add(string s) => h.AppendData(Encoding.UTF8.GetBytes(s + "\n"));
        Add("wecolora-features-v1");
        using (no_grad())
            foreach (var (name, t) in model.state_dict().OrderBy(kv => kv.Key, StringComparer.Ordinal))
            {
                Add($"{name} {t.dtype} [{string.Join(",", t.shape)}]");
                using var f = t.to(float32).contiguous();
                h.AppendData(MemoryMarshal.AsBytes(f.data<float>().ToArray().AsSpan()));
            }
        Add($"{preprocess.ImgSize} {preprocess.CropPct:R} {string.Join(",", preprocess.Mean)} {string.Join(",", preprocess.Std)} {preprocess.Interpolation} {kind}");
        var sources = new HashSet<IImageSource>(ReferenceEqualityComparer.Instance);
        Add(items.Count.ToString());
        foreach (var item in items)
        {
            if (item.Source is null)
            {
                var info = new FileInfo(item.Path);
                Add($"{item.Path}|{item.Label}|{(info.Exists ? info.Length : -1)}|{(info.Exists ? info.LastWriteTimeUtc.Ticks : 0)}");
            }
            else
            {
                if (sources.Add(item.Source)) Add(item.Source.Identity);
                Add($"{item.SourceIndex}|{item.Label}");
            }
        }
        return Convert.ToHexStringLower(h.GetHashAndReset());
    }

    /// <summary>
    /// The cached features for <paramref name="key"/> from <paramref name="cacheDir"/>, or <paramref name="extract"/>()
    /// (then saved there). With no <paramref name="cacheDir"/> it just extracts. <paramref name="hit"/> says which happened.
    /// </summary>
    public static Tensor GetOrExtract(string? cacheDir, string key, int rows, Func<Tensor> extract, out bool hit)
    {
        hit = false;
        if (cacheDir is null) return extract();
        var path = PathFor(cacheDir, key);
        if (File.Exists(path))
        {
            try
            {
                var tensors = SafeTensors.Load(path, out var meta);
                if (meta.TryGetValue("key", out var k) && k == key && tensors.TryGetValue("features", out var f) && f.shape[0] == rows)
                {
                    foreach (var (name, t) in tensors) if (name != "features") t.Dispose();
                    hit = true;
                    return f;
                }
                foreach (var t in tensors.Values) t.Dispose();
            }
            catch (CheckpointException)
            {
                // A damaged cache file is simply recomputed and overwritten.
            }
        }
        var features = extract();
        Directory.CreateDirectory(cacheDir);
        var tmp = path + $".{Environment.ProcessId}.tmp";
        SafeTensors.Save(tmp, [new("features", features)], new Dictionary<string, string> { ["key"] = key });
        File.Move(tmp, path, overwrite: true);
        return features;
    }

    /// <summary>
    /// <see cref="FeatureExtractor.Extract"/> through the cache in <paramref name="cacheDir"/> (none: always extracts);
    /// <paramref name="hit"/> is true when the features came from the cache.
    /// </summary>
    public static Tensor Extract(VisionTransformer model, IReadOnlyList<ImageItem> items, Preprocess preprocess, FeatureKind kind,
        int batchSize, string? cacheDir, out bool hit, IProgress<int>? progress = null, CancellationToken ct = default)
    {
        var key = cacheDir is null ? "" : Key(model, items, preprocess, kind);
        return GetOrExtract(cacheDir, key, items.Count, () => FeatureExtractor.Extract(model, items, preprocess, kind, batchSize, progress, ct), out hit);
    }

    public static string PathFor(string cacheDir, string key) => Path.Combine(cacheDir, $"features-{key[..32]}.safetensors");
}
