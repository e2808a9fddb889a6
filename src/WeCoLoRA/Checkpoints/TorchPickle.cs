using System.IO.Compression;
using System.Text;
using TorchSharp;

namespace WeCoLoRA.Checkpoints;

/// <summary>
/// Reader for PyTorch zip checkpoints (torch.save's default format since 1.6; .pth / .pt / .bin).
/// The pickle is interpreted by a restricted VM that never executes anything: only tensors, storages and
/// OrderedDict are understood, every other global is an inert placeholder that is refused if the
/// returned state dict would need it.
/// </summary>
public static class TorchPickle
{
    /// <summary>Largest data.pkl accepted.</summary>
    public const long MaxPickleBytes = 1L << 30;

    /// <summary>Most zip entries accepted (torch.save writes one per storage plus a handful).</summary>
    public const int MaxEntries = 1_000_000;

    /// <summary>
    /// Largest ratio of an entry's declared size to its compressed size: deflate cannot do better than 1032:1, so a
    /// higher claim is a lie (a zip bomb or a corrupt directory) and is refused before anything is allocated for it.
    /// torch.save itself stores entries uncompressed (ratio 1).
    /// </summary>
    public const long MaxCompressionRatio = 1032;

    private static readonly string[] WrapperKeys = ["model", "state_dict", "module"];

    /// <summary>
    /// Returns the state dict in the checkpoint: the top-level dict when all its values are tensors, otherwise the
    /// first of its "model", "state_dict" or "module" entries that is a dict of tensors (MAE / DeiT release format).
    /// </summary>
    public static Dictionary<string, torch.Tensor> LoadStateDict(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new CheckpointException($"'{path}': file not found; check the path");

        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        try
        {
            return Load(fs, path);
        }
        catch (Exception ex) when (ex is InvalidDataException or EndOfStreamException)
        {
            // Raised lazily by System.IO.Compression while reading the central directory, a local header or an
            // entry's data (CRC mismatch, bad deflate stream, unsupported method, sizes that run past the file).
            throw new CheckpointException($"'{path}': zip archive is corrupt ({ex.Message.ReplaceLineEndings(" ")}); the file is truncated or damaged, download or save it again");
        }
    }

    private static Dictionary<string, torch.Tensor> Load(FileStream fs, string path)
    {
        long fileLength = fs.Length;
        ZipArchive zip;
        try
        {
            zip = new ZipArchive(fs, ZipArchiveMode.Read, leaveOpen: true);
        }
        catch (InvalidDataException ex)
        {
            throw new CheckpointException($"'{path}': not a readable zip archive ({ex.Message.ReplaceLineEndings(" ")}); the file is truncated or not a torch.save checkpoint");
        }
        using (zip)
        {
            var (prefix, entries) = IndexEntries(zip, path);
            foreach (var e in entries.Values) CheckDeclaredSize(e, fileLength, path);

            if (entries.TryGetValue(prefix + "byteorder", out var bo))
            {
                string order = ReadSmallText(bo, path);
                if (order.Trim() != "little")
                    throw new CheckpointException($"'{path}': entry '{bo.FullName}' says byte order '{order.Trim()}'; only little-endian checkpoints are supported, re-save on a little-endian machine");
            }

            var pklEntry = entries[prefix + "data.pkl"];
            if (pklEntry.Length > MaxPickleBytes)
                throw new CheckpointException($"'{path}': entry '{pklEntry.FullName}' is {pklEntry.Length} bytes, over the {MaxPickleBytes}-byte limit; the file is corrupt or not a state dict");
            var pkl = ReadEntry(pklEntry, path);

            var storages = new Dictionary<string, StorageRef>(StringComparer.Ordinal);
            object PersistentLoad(PyTuple pid, long at)
            {
                var it = pid.Items;
                if (it.Length != 5 || it[0] is not "storage")
                    throw new CheckpointException($"'{path}': pickle at offset {at} has a persistent id that is not ('storage', type, key, location, numel); only torch.save checkpoints are supported");
                if (it[1] is not PyGlobal { Allowed: true, Module: "torch" } st || !DTypes.TryFromStorageName(st.Name, out var type, out int size))
                    throw new CheckpointException($"'{path}': pickle at offset {at} names storage type {PickleVm.Describe(it[1])}, which is not supported; convert the tensors to a standard dtype and re-save");
                if (it[2] is not string key || key.Length == 0 || !key.All(c => char.IsAsciiLetterOrDigit(c) || c == '_'))
                    throw new CheckpointException($"'{path}': pickle at offset {at} names storage key {PickleVm.Describe(it[2])}, which is not a plain name; the file is corrupt");
                if (it[4] is not long numel || numel < 0)
                    throw new CheckpointException($"'{path}': pickle at offset {at} gives storage '{key}' element count {PickleVm.Describe(it[4])}; the file is corrupt");
                if (storages.TryGetValue(key, out var known))
                {
                    if (known.Type != type || known.Numel != numel)
                        throw new CheckpointException($"'{path}': storage '{key}' is used as both {known.Type}[{known.Numel}] and {type}[{numel}]; views of one storage with different dtypes are not supported");
                    return known;
                }
                string name = prefix + "data/" + key;
                if (!entries.TryGetValue(name, out var entry))
                    throw new CheckpointException($"'{path}': storage '{key}' has no entry '{name}' in the archive; the file is truncated or corrupt");
                long expected;
                try { expected = checked(numel * size); }
                catch (OverflowException) { throw new CheckpointException($"'{path}': storage '{key}' element count {numel} overflows; the file is corrupt"); }
                if (entry.Length != expected)
                    throw new CheckpointException($"'{path}': entry '{name}' is {entry.Length} bytes but the pickle asks for {numel} x {type} = {expected} bytes; the file is corrupt");
                var r = new StorageRef(key, type, size, numel);
                storages[key] = r;
                return r;
            }

            object? top = new PickleVm(pkl, path, PersistentLoad).Run();
            var chosen = ChooseStateDict(top, path);
            return Materialize(chosen, entries, prefix, path);
        }
    }

    /// <summary>Refuses sizes the file cannot back, before anything is allocated from them.</summary>
    private static void CheckDeclaredSize(ZipArchiveEntry e, long fileLength, string path)
    {
        if (e.CompressedLength > fileLength)
            throw new CheckpointException($"'{path}': zip entry '{e.FullName}' claims {e.CompressedLength} compressed bytes in a {fileLength}-byte file; the archive is corrupt");
        if (e.Length > Math.Max(e.CompressedLength, 1) * MaxCompressionRatio)
            throw new CheckpointException($"'{path}': zip entry '{e.FullName}' claims {e.Length} bytes from {e.CompressedLength} compressed bytes, more than deflate can encode; the archive is corrupt or a zip bomb");
    }

    /// <summary>
    /// Reads an entry of at most <see cref="MaxPickleBytes"/> bytes. The buffer grows with the bytes that actually
    /// arrive rather than trusting the declared size up front; fewer or more bytes than declared are refused.
    /// </summary>
    private static byte[] ReadEntry(ZipArchiveEntry e, string path)
    {
        using var s = e.Open();
        const int Direct = 16 << 20;
        if (e.Length <= Direct)
        {
            var small = new byte[e.Length];
            int got = s.ReadAtLeast(small, small.Length, throwOnEndOfStream: false);
            if (got < small.Length)
                throw new CheckpointException($"'{path}': zip entry '{e.FullName}' ends after {got} of its {e.Length} bytes; the file is truncated or corrupt");
            return small;
        }
        var ms = new MemoryStream();
        var chunk = new byte[1 << 20];
        while (ms.Length < e.Length)
        {
            int n = s.Read(chunk, 0, (int)Math.Min(chunk.Length, e.Length - ms.Length));
            if (n == 0)
                throw new CheckpointException($"'{path}': zip entry '{e.FullName}' ends after {ms.Length} of its {e.Length} bytes; the file is truncated or corrupt");
            ms.Write(chunk, 0, n);
        }
        return ms.ToArray();
    }

    private static (string Prefix, Dictionary<string, ZipArchiveEntry> Entries) IndexEntries(ZipArchive zip, string path)
    {
        var entries = new Dictionary<string, ZipArchiveEntry>(StringComparer.Ordinal);
        if (zip.Entries.Count > MaxEntries)
            throw new CheckpointException($"'{path}': zip archive has {zip.Entries.Count} entries, over the {MaxEntries}-entry limit; it is not a state dict");
        foreach (var e in zip.Entries)
        {
            string n = e.FullName;
            if (n.Contains("..", StringComparison.Ordinal) || n.StartsWith('/') || n.Contains('\\') || n.Contains(':'))
                throw new CheckpointException($"'{path}': zip entry '{n}' has an unsafe name ('..', absolute or drive path); refusing the archive, it was not written by torch.save");
            if (!entries.TryAdd(n, e))
                throw new CheckpointException($"'{path}': zip entry '{n}' appears twice; the archive is corrupt");
        }
        var pkls = entries.Keys.Where(k => k.EndsWith("/data.pkl", StringComparison.Ordinal) && k.IndexOf('/') == k.Length - "/data.pkl".Length).ToList();
        if (pkls.Count == 0)
        {
            string hint = entries.Keys.Any(k => k.EndsWith("/constants.pkl", StringComparison.Ordinal))
                ? "it looks like a TorchScript archive (torch.jit.save); save model.state_dict() with torch.save instead"
                : "it is not a torch.save checkpoint";
            throw new CheckpointException($"'{path}': zip archive has no '<name>/data.pkl' entry; {hint}");
        }
        if (pkls.Count > 1)
            throw new CheckpointException($"'{path}': zip archive has {pkls.Count} data.pkl entries ({string.Join(", ", pkls)}); a torch.save checkpoint has exactly one");
        string prefix = pkls[0][..^"data.pkl".Length];
        if (entries.ContainsKey(prefix + "constants.pkl"))
            throw new CheckpointException($"'{path}': archive holds '{prefix}constants.pkl', so it is a TorchScript archive (torch.jit.save); save model.state_dict() with torch.save instead");
        return (prefix, entries);
    }

    private static string ReadSmallText(ZipArchiveEntry e, string path)
    {
        if (e.Length > 64) throw new CheckpointException($"'{path}': entry '{e.FullName}' is {e.Length} bytes, too long; the archive is corrupt");
        using var s = e.Open();
        var b = new byte[e.Length];
        s.ReadExactly(b);
        return Encoding.ASCII.GetString(b);
    }

    private static List<(string Key, LazyTensor Tensor)> ChooseStateDict(object? top, string path)
    {
        if (top is RefusedObject r)
            throw Refused(path, r.Global, "the top-level object", "save model.state_dict() rather than the model object");
        if (top is not PyDict d)
            throw new CheckpointException($"'{path}': top-level object is a {PickleVm.Describe(top)}, not a dict of tensors; save a state dict (model.state_dict())");

        if (IsTensorDict(d)) return ToList(d, path, "");
        foreach (var wk in WrapperKeys)
        {
            var inner = d.Get(wk);
            if (inner is RefusedObject ir)
                throw Refused(path, ir.Global, $"entry '{wk}'", "save model.state_dict() rather than the model object");
            if (inner is PyDict id && IsTensorDict(id)) return ToList(id, path, wk + ".");
        }
        // Values that are all foreign objects: most likely a state dict whose values were built by refused code.
        if (d.Items.All(kv => kv.Value is RefusedObject))
            return ToList(d, path, "");
        string keys = string.Join(", ", d.Items.Take(12).Select(kv => kv.Key is string s ? $"'{s}'" : PickleVm.Describe(kv.Key)));
        throw new CheckpointException($"'{path}': top-level dict ({keys}) is neither a dict of tensors nor has a 'model', 'state_dict' or 'module' entry holding one; extract the state dict and re-save it");
    }

    /// <summary>
    /// Empty, or holding tensors and otherwise only inert refused objects standing where tensors would be
    /// (those are then refused by name rather than skipped).
    /// </summary>
    private static bool IsTensorDict(PyDict d) =>
        d.Items.Count == 0
        || d.Items.Any(kv => kv.Value is LazyTensor) && d.Items.All(kv => kv.Value is LazyTensor or RefusedObject);

    private static List<(string, LazyTensor)> ToList(PyDict d, string path, string where)
    {
        var list = new List<(string, LazyTensor)>(d.Items.Count);
        foreach (var (k, v) in d.Items)
        {
            if (k is not string key)
                throw new CheckpointException($"'{path}': state dict {where}key {PickleVm.Describe(k)} is not a string; re-save with string keys");
            if (v is RefusedObject r)
                throw Refused(path, r.Global, $"state dict key '{where}{key}'", "re-save the checkpoint as a plain state dict of tensors");
            list.Add((key, (LazyTensor)v!));
        }
        return list;
    }

    private static CheckpointException Refused(string path, string global, string where, string fix) =>
        new($"refusing pickle global '{global}' in file '{path}' ({where}): only tensors and OrderedDict are allowed; {fix}");

    private static Dictionary<string, torch.Tensor> Materialize(List<(string Key, LazyTensor Tensor)> items,
        Dictionary<string, ZipArchiveEntry> entries, string prefix, string path)
    {
        // Every key gets its own copy, so many keys viewing one storage would multiply a small file into a huge
        // load; allow the copies (tied weights, views) up to a multiple of the stored data plus the expansion allowance.
        long stored = 0, copied = 0;
        foreach (var st in items.Select(i => i.Tensor.Storage).DistinctBy(s => s.Key)) stored += st.Numel;
        foreach (var (key, lt) in items)
        {
            long numel = 1;
            foreach (long d in lt.Size) numel *= d; // validated not to overflow by the VM
            copied += numel;
            if (copied > 4 * stored + PickleVm.MaxExpandedElements)
                throw new CheckpointException($"'{path}': the state dict's tensors (up to key '{key}') would copy {copied} elements out of {stored} stored; views that repeat the same data this often are not supported, save contiguous tensors instead");
        }

        var loaded = new Dictionary<string, torch.Tensor>(StringComparer.Ordinal);
        var result = new Dictionary<string, torch.Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var (key, lt) in items)
            {
                var st = lt.Storage;
                if (!loaded.TryGetValue(st.Key, out var storage))
                {
                    storage = torch.empty(st.Numel, st.Type);
                    loaded[st.Key] = storage;
                    var entry = entries[prefix + "data/" + st.Key];
                    using var s = entry.Open();
                    TensorBytes.ReadInto(storage, s, path, $"storage '{entry.FullName}'");
                }
                using var view = storage.as_strided(lt.Size, lt.Stride, lt.Offset);
                result[key] = view.is_contiguous() ? view.clone() : view.contiguous();
            }
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
        finally
        {
            foreach (var t in loaded.Values) t.Dispose();
        }
        return result;
    }
}
