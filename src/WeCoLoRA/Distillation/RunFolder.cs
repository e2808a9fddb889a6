using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp.Modules;
using WeCoLoRA.Checkpoints;
using static TorchSharp.torch;

namespace WeCoLoRA.Distillation;

/// <summary>The state of one optimizer step, as logged to metrics.jsonl and shown on the terminal.</summary>
public sealed record StepMetrics(int Epoch, long Step, double Loss, double Lr, double ImagesPerSecond, double RssMb);

/// <summary>Where in the run a checkpoint was taken: the next batch to run is batch <paramref name="BatchesDone"/> of <paramref name="Epoch"/>.</summary>
public sealed record CheckpointState(int Epoch, int BatchesDone, long Step);

/// <summary>
/// A run's folder: config.json, subset.txt, metrics.jsonl, checkpoints/step-NNNNNNNN (after every epoch and on
/// interrupt; the last two kept, each written to a temporary folder, fsynced and renamed into place), and the output
/// model folder (student/ for distillation, model/ for supervised training).
/// </summary>
public sealed class RunFolder(string root, string modelDir = "student")
{
    public string Root { get; } = Path.GetFullPath(root);
    public string ConfigPath => Path.Combine(Root, "config.json");
    public string SubsetPath => Path.Combine(Root, "subset.txt");
    public string MetricsPath => Path.Combine(Root, "metrics.jsonl");
    public string CheckpointsDir => Path.Combine(Root, "checkpoints");
    public string StudentDir => Path.Combine(Root, modelDir);

    /// <summary>The run's output model folder (same as <see cref="StudentDir"/>).</summary>
    public string ModelDir => StudentDir;
    const int CheckpointsKept = 2;

    public bool HoldsRun => File.Exists(ConfigPath);

    /// <summary>Starts a fresh run; a folder that holds another run is refused unless <paramref name="overwrite"/>.</summary>
    public void Create(bool overwrite)
    {
        if (HoldsRun && !overwrite)
            throw new ArgumentException($"--out {Root} already holds a run; pass --resume to continue it or --overwrite to replace it");
        if (HoldsRun)
        {
            foreach (var f in new[] { ConfigPath, SubsetPath, MetricsPath }) File.Delete(f);
            foreach (var d in new[] { CheckpointsDir, StudentDir }) if (Directory.Exists(d)) Directory.Delete(d, true);
        }
        Directory.CreateDirectory(Root);
    }

    public void WriteText(string path, string text)
    {
        var tmp = path + ".tmp";
        File.WriteAllText(tmp, text);
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>
    /// Refuses a --resume whose settings differ from the stored run's, naming each "key (stored -> now)";
    /// <paramref name="ignored"/> keys change speed or reporting, or (lanes) only the order of gradient sums.
    /// </summary>
    public void CheckSameSettings(JsonObject now, params string[] ignored)
    {
        var stored = ReadConfig()["settings"]!.AsObject();
        var differing = now.Where(kv => !ignored.Contains(kv.Key) && !JsonNode.DeepEquals(kv.Value, stored[kv.Key]))
            .Select(kv => $"{kv.Key} ({stored[kv.Key]?.ToJsonString() ?? "absent"} -> {kv.Value?.ToJsonString()})").ToList();
        if (differing.Count > 0)
            throw new DistillationException($"--resume: the run was started with other settings: {string.Join(", ", differing)}; resume with the original arguments or start a new --out");
    }

    public JsonObject ReadConfig() => JsonNode.Parse(File.ReadAllText(ConfigPath))!.AsObject();

    public void AppendMetrics(StepMetrics m)
    {
        var line = JsonSerializer.Serialize(new { epoch = m.Epoch, step = m.Step, loss = m.Loss, lr = m.Lr, images_per_s = Math.Round(m.ImagesPerSecond, 2), rss_mb = Math.Round(m.RssMb, 1) });
        File.AppendAllText(MetricsPath, line + "\n");
    }

    /// <summary>Drops metric lines past the checkpoint being resumed, so the file reads as one uninterrupted run.</summary>
    public void TruncateMetrics(long lastStep)
    {
        if (!File.Exists(MetricsPath)) return;
        var keep = File.ReadLines(MetricsPath)
            .Where(l => l.Length > 0 && JsonNode.Parse(l)!["step"]!.GetValue<long>() <= lastStep).ToList();
        WriteText(MetricsPath, string.Concat(keep.Select(l => l + "\n")));
    }

    /// <summary>Writes trainable tensors, optimizer state and position; keeps the last two checkpoints.</summary>
    public string SaveCheckpoint(CheckpointState state, IEnumerable<(string Name, Tensor Value)> trainable, OptimizerHelper optimizer)
    {
        Directory.CreateDirectory(CheckpointsDir);
        var final = Path.Combine(CheckpointsDir, $"step-{state.Step:D8}");
        var tmp = final + ".tmp";
        if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        Directory.CreateDirectory(tmp);
        try
        {
            SafeTensors.Save(Path.Combine(tmp, "trainable.safetensors"), trainable.Select(p => new KeyValuePair<string, Tensor>(p.Name, p.Value)));
            var opt = Path.Combine(tmp, "optimizer.bin");
            optimizer.save_state_dict(opt);
            Fsync(opt);
            var stateFile = Path.Combine(tmp, "state.json");
            File.WriteAllText(stateFile, JsonSerializer.Serialize(state));
            Fsync(stateFile);
        }
        catch (IOException e)
        {
            // Disk full or similar: drop the partial folder; the previous checkpoint was never touched.
            try { Directory.Delete(tmp, true); } catch (IOException) { }
            throw new IOException($"writing checkpoint {final} failed ({e.Message}); the previous checkpoint {LatestCheckpoint() ?? "(none)"} is intact, free space and --resume", e);
        }
        if (Directory.Exists(final)) Directory.Delete(final, true);
        Directory.Move(tmp, final);
        foreach (var old in CompleteCheckpoints().SkipLast(CheckpointsKept)) Directory.Delete(old, true);
        return final;
    }

    static void Fsync(string path)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        f.Flush(flushToDisk: true);
    }

    IEnumerable<string> CompleteCheckpoints() =>
        Directory.Exists(CheckpointsDir)
            ? Directory.GetDirectories(CheckpointsDir, "step-*").Where(d => !d.EndsWith(".tmp", StringComparison.Ordinal)).Order(StringComparer.Ordinal)
            : [];

    public string? LatestCheckpoint() => CompleteCheckpoints().LastOrDefault();

    public static CheckpointState ReadState(string checkpoint) =>
        JsonSerializer.Deserialize<CheckpointState>(File.ReadAllText(Path.Combine(checkpoint, "state.json")))!;

    public static Dictionary<string, Tensor> ReadTrainable(string checkpoint) =>
        SafeTensors.Load(Path.Combine(checkpoint, "trainable.safetensors"));
}
