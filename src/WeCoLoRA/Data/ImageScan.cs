namespace WeCoLoRA.Data;

/// <summary>The images of a list that decode, and those that do not with the reason (one line each).</summary>
public sealed record ScanResult(IReadOnlyList<ImageItem> Usable, IReadOnlyList<(ImageItem Item, string Reason)> Skipped);

/// <summary>
/// Decodes every file-backed image once, in parallel, before any work starts, so that a folder nobody curated
/// (zero-byte, truncated, non-image, decompression-bomb files) costs a warning per bad file instead of a failed run.
/// </summary>
public static class ImageScan
{
    /// <param name="strict">Fail on the first bad file (in list order) instead of skipping it.</param>
    /// <param name="warn">Receives one line per skipped file, in list order.</param>
    public static ScanResult Check(IReadOnlyList<ImageItem> items, bool strict = false, long maxPixels = ImageDecoder.DefaultMaxPixels,
        Action<string>? warn = null, int workers = 0)
    {
        var errors = new string?[items.Count];
        Parallel.For(0, items.Count, new ParallelOptions { MaxDegreeOfParallelism = workers > 0 ? workers : Environment.ProcessorCount }, i =>
        {
            if (items[i].Source is not null) return; // decoded dataset files were validated when read
            try
            {
                items[i].Load(maxPixels);
            }
            catch (ImageDecodeException e)
            {
                errors[i] = e.Message;
            }
        });
        var usable = new List<ImageItem>();
        var skipped = new List<(ImageItem, string)>();
        for (int i = 0; i < items.Count; i++)
        {
            if (errors[i] is not { } reason)
            {
                usable.Add(items[i]);
                continue;
            }
            if (strict) throw new ImageDecodeException($"{reason} (--strict: the first unusable image stops the run)");
            warn?.Invoke($"skipping {reason}");
            skipped.Add((items[i], reason));
        }
        if (usable.Count == 0)
            throw new DataException($"none of the {items.Count} images is usable (first: {errors.First(e => e is not null)})");
        return new ScanResult(usable, skipped);
    }
}
