namespace WeCoLoRA.Data;

/// <summary>Samples with any number of labels each: <see cref="Targets"/>[i] lists sample i's class indices.</summary>
public sealed record MultiLabelDataset(IReadOnlyList<ImageItem> Items, IReadOnlyList<int[]> Targets, IReadOnlyList<string> Classes);

/// <summary>
/// A multi-label list (e.g. ChestX-ray14): one line per image, <c>path,label1|label2|…</c>, the path relative to the CSV's
/// folder; an empty label field means no labels. A first line whose first field is <c>path</c> is a header. Blank lines are
/// skipped. Paths may not contain commas (no quoting).
/// </summary>
public static class MultiLabelCsv
{
    /// <summary>
    /// Reads <paramref name="csvPath"/>. Classes are <paramref name="classes"/> when given (a label outside them is an error),
    /// otherwise the ordinal-sorted distinct labels of the file.
    /// </summary>
    public static MultiLabelDataset Read(string csvPath, IReadOnlyList<string>? classes = null)
    {
        if (!File.Exists(csvPath)) throw new DataException($"Label file '{csvPath}' does not exist.");
        var dir = Path.GetDirectoryName(Path.GetFullPath(csvPath))!;
        var rows = new List<(string Path, string Rel, string[] Labels, int Line)>();
        var lines = File.ReadAllLines(csvPath);
        for (int i = 0; i < lines.Length; i++)
        {
            var line = lines[i].Trim();
            if (line.Length == 0) continue;
            var fields = line.Split(',');
            if (fields.Length != 2)
                throw new DataException($"Label file '{csvPath}' line {i + 1}: expected 'path,label1|label2|…', got {fields.Length} fields.");
            var rel = fields[0].Trim();
            if (rows.Count == 0 && rel.Equals("path", StringComparison.OrdinalIgnoreCase)) continue;
            var full = Path.GetFullPath(Path.Combine(dir, rel));
            if (!File.Exists(full)) throw new DataException($"Label file '{csvPath}' line {i + 1}: image '{full}' does not exist.");
            var labels = fields[1].Split('|', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            rows.Add((full, rel.Replace('\\', '/'), labels, i + 1));
        }
        if (rows.Count == 0) throw new DataException($"Label file '{csvPath}' lists no images.");
        var names = classes ?? [.. rows.SelectMany(r => r.Labels).Distinct().Order(StringComparer.Ordinal)];
        var index = names.Select((n, i) => (n, i)).ToDictionary(p => p.n, p => p.i, StringComparer.Ordinal);
        var items = new List<ImageItem>(rows.Count);
        var targets = new List<int[]>(rows.Count);
        foreach (var r in rows)
        {
            var t = new int[r.Labels.Length];
            for (int j = 0; j < t.Length; j++)
                t[j] = index.TryGetValue(r.Labels[j], out var c) ? c
                    : throw new DataException($"Label file '{csvPath}' line {r.Line}: label '{r.Labels[j]}' is not among the training classes.");
            items.Add(new ImageItem(r.Path, r.Rel, -1));
            targets.Add(t);
        }
        return new MultiLabelDataset(items, targets, names);
    }
}
