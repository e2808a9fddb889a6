using WeCoLoRA.Data;

namespace WeCoLoRA.Distillation;

/// <summary>The few images a distillation uses: a fixed-seed fraction of each class folder (labels are never read).</summary>
public static class FewShotSubset
{
    /// <summary>
    /// Per class sub-folder, shuffle the file list with <paramref name="seed"/> and keep the first floor(ratio·n), at least 1;
    /// a folder with images only at its top level is one group. The result is in ordinal path order.
    /// A prefixed dataset (idx:…, cifar10:…) is grouped by its label, the stand-in for a class folder; labels go no further.
    /// </summary>
    public static IReadOnlyList<ImageItem> Select(string root, double ratio, int seed)
    {
        if (ratio <= 0 || ratio > 1) throw new ArgumentException($"--ratio {ratio} must be in (0, 1]");
        var all = DatasetSource.IsPrefixed(root) ? DatasetSource.Open(root).Items : ImageFolders.ListAll(root);
        var groups = all.GroupBy(GroupOf);
        var kept = new List<ImageItem>();
        foreach (var group in groups)
        {
            var files = group.ToArray();
            new Random(seed).Shuffle(files);
            kept.AddRange(files.Take(Math.Max(1, (int)Math.Floor(ratio * files.Length))));
        }
        return kept.OrderBy(i => i.RelativePath, StringComparer.Ordinal).ToList();
    }

    /// <summary>
    /// The class an image is sampled in: its top-level sub-folder ("" for files at the top), or for a prefixed dataset
    /// (idx:…, cifar10:…) its label, the stand-in for a class folder; labels go no further.
    /// </summary>
    public static string GroupOf(ImageItem item) =>
        item.Source is not null ? $"label {item.Label}"
        : item.RelativePath.Contains('/') ? item.RelativePath[..item.RelativePath.IndexOf('/')] : "";
}
