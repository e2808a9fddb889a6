namespace WeCoLoRA.Data;

/// <summary>A folder of images that cannot be listed; the message is one line naming the folder and why.</summary>
public sealed class DataException(string message) : Exception(message);

/// <summary>
/// One image: a file at <see cref="Path"/>, or sample <see cref="SourceIndex"/> of an in-memory <see cref="Source"/> (IDX, CIFAR),
/// in which case <see cref="Path"/> only names it in messages (e.g. <c>idx:/data/fashion-mnist:train#17</c>).
/// <see cref="Label"/> is -1 when unlabeled. <see cref="RelativePath"/> uses '/' separators.
/// </summary>
public sealed record ImageItem(string Path, string RelativePath, int Label)
{
    /// <summary>Where the pixels come from when they are not a file; null = decode the file at <see cref="Path"/>.</summary>
    public IImageSource? Source { get; init; }

    /// <summary>The sample's index in <see cref="Source"/>.</summary>
    public int SourceIndex { get; init; }

    /// <summary>The image as 8-bit RGB: <see cref="Source"/>.Load(<see cref="SourceIndex"/>), or the decoded file.</summary>
    public RgbImage Load(long maxPixels = ImageDecoder.DefaultMaxPixels) =>
        Source is null ? ImageDecoder.Decode(Path, maxPixels) : Source.Load(SourceIndex);
}

/// <summary>Images held in memory (a decoded dataset file); <see cref="Load"/> is called concurrently from loader threads.</summary>
public interface IImageSource
{
    int Count { get; }

    /// <summary>Sample <paramref name="index"/> as RGB (grayscale replicated into the three channels, as PIL's convert("RGB")).</summary>
    RgbImage Load(int index);

    /// <summary>What the samples were read from, with file sizes and modification times (part of feature-cache keys).</summary>
    string Identity { get; }
}

public static class ImageFolders
{
    /// <summary>Recognised image extensions (matched case-insensitively).</summary>
    public static readonly string[] Extensions = [".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"];

    public static bool IsImageFile(string path)
    {
        var ext = System.IO.Path.GetExtension(path);
        foreach (var e in Extensions)
            if (ext.Equals(e, StringComparison.OrdinalIgnoreCase)) return true;
        return false;
    }

    /// <summary>Every image below <paramref name="root"/>, recursively, in ordinal order of relative path; labels are -1.</summary>
    public static IReadOnlyList<ImageItem> ListAll(string root)
    {
        var full = CheckRoot(root);
        var items = Scan(full, full, -1);
        if (items.Count == 0)
            throw new DataException($"No images ({string.Join(' ', Extensions)}) found under '{root}'.");
        return items;
    }

    /// <summary>
    /// torchvision ImageFolder: each immediate sub-folder is a class (ordinal order, label = its index); its images are
    /// found recursively in torchvision's order — <c>sorted(os.walk(class_dir))</c> then sorted file names, i.e. ordered by
    /// (containing folder, file name), so a class folder's own files precede those of its sub-folders. A class folder without
    /// images is an error, as in torchvision.
    /// </summary>
    public static (IReadOnlyList<ImageItem> Items, IReadOnlyList<string> Classes) ListClasses(string root)
    {
        var full = CheckRoot(root);
        var classes = Directory.GetDirectories(full)
            .Select(d => System.IO.Path.GetFileName(d))
            .Order(StringComparer.Ordinal)
            .ToList();
        if (classes.Count == 0)
            throw new DataException($"No class sub-folders in '{root}' (expected root/<class>/<images>).");
        var items = new List<ImageItem>();
        for (int label = 0; label < classes.Count; label++)
        {
            var classItems = Scan(full, System.IO.Path.Combine(full, classes[label]), label, byFolderThenName: true);
            if (classItems.Count == 0)
                throw new DataException($"Class folder '{System.IO.Path.Combine(root, classes[label])}' has no images.");
            items.AddRange(classItems);
        }
        return (items, classes);
    }

    private static string CheckRoot(string root)
    {
        if (string.IsNullOrWhiteSpace(root) || !Directory.Exists(root))
            throw new DataException($"Image folder '{root}' does not exist.");
        return System.IO.Path.GetFullPath(root);
    }

    private static List<ImageItem> Scan(string root, string dir, int label, bool byFolderThenName = false)
    {
        var options = new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = true, AttributesToSkip = FileAttributes.None };
        var items = new List<ImageItem>();
        foreach (var path in Directory.EnumerateFiles(dir, "*", options))
        {
            if (!IsImageFile(path)) continue;
            var rel = System.IO.Path.GetRelativePath(root, path).Replace(System.IO.Path.DirectorySeparatorChar, '/');
            items.Add(new ImageItem(path, rel, label));
        }
        if (byFolderThenName)
            items.Sort((a, b) =>
            {
                int sa = a.RelativePath.LastIndexOf('/'), sb = b.RelativePath.LastIndexOf('/');
                int c = string.CompareOrdinal(a.RelativePath[..Math.Max(sa, 0)], b.RelativePath[..Math.Max(sb, 0)]);
                return c != 0 ? c : string.CompareOrdinal(a.RelativePath[(sa + 1)..], b.RelativePath[(sb + 1)..]);
            });
        else
            items.Sort((a, b) => string.CompareOrdinal(a.RelativePath, b.RelativePath));
        return items;
    }
}
