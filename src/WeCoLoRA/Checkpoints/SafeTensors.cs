using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using TorchSharp;

namespace WeCoLoRA.Checkpoints;

/// <summary>
/// Reader and writer for the safetensors format (https://github.com/huggingface/safetensors):
/// u64 little-endian header length N, N bytes of UTF-8 JSON header, then the data section.
/// Everything in the header is validated before any tensor memory is allocated.
/// </summary>
public static class SafeTensors
{
    /// <summary>Largest header accepted, as in the reference implementation.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private const string MetadataKey = "__metadata__";

    internal sealed record Entry(string Key, torch.ScalarType Type, int ElementSize, long[] Shape, long Begin, long End);

    internal sealed record Header(long DataStart, List<Entry> Entries, Dictionary<string, string> Metadata);

    /// <summary>Reads every tensor with its stored dtype; <paramref name="metadata"/> is the "__metadata__" map (empty if none).</summary>
    public static Dictionary<string, torch.Tensor> Load(string path, out Dictionary<string, string> metadata)
    {
        using var fs = OpenRead(path);
        var header = ReadHeader(fs, path);
        metadata = header.Metadata;
        var result = new Dictionary<string, torch.Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var e in header.Entries)
            {
                var t = torch.empty(e.Shape, e.Type);
                result.Add(e.Key, t);
                fs.Seek(header.DataStart + e.Begin, SeekOrigin.Begin);
                TensorBytes.ReadInto(t, fs, path, $"tensor '{e.Key}'");
            }
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
        return result;
    }

    /// <summary>Reads every tensor with its stored dtype.</summary>
    public static Dictionary<string, torch.Tensor> Load(string path) => Load(path, out _);

    /// <summary>Reads only the header and returns its "__metadata__" map (empty if none).</summary>
    public static Dictionary<string, string> ReadMetadata(string path)
    {
        using var fs = OpenRead(path);
        return ReadHeader(fs, path).Metadata;
    }

    /// <summary>
    /// Writes the tensors (CPU; non-contiguous ones are made contiguous) with keys sorted ordinally, a header padded
    /// with spaces to a multiple of 8 bytes, and "__metadata__" when given. Atomic: writes <c>path + ".tmp"</c>,
    /// flushes it to disk, then renames it over <paramref name="path"/>.
    /// </summary>
    public static void Save(string path, IEnumerable<KeyValuePair<string, torch.Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensors);
        var items = new SortedDictionary<string, torch.Tensor>(StringComparer.Ordinal);
        foreach (var (key, t) in tensors)
        {
            if (string.IsNullOrEmpty(key))
                throw new CheckpointException($"'{path}': cannot save a tensor with an empty name; give every tensor a non-empty key");
            if (key == MetadataKey)
                throw new CheckpointException($"'{path}': '{MetadataKey}' is reserved by the safetensors format; rename that tensor");
            if (t is null)
                throw new CheckpointException($"'{path}': tensor '{key}' is null; pass a tensor or leave the key out");
            if (!items.TryAdd(key, t))
                throw new CheckpointException($"'{path}': tensor name '{key}' appears twice; keys must be unique");
            if (!DTypes.TryToSafetensors(t.dtype, out _))
                throw new CheckpointException($"'{path}': tensor '{key}' has dtype {t.dtype}, which this writer does not support; convert it to one of {DTypes.KnownSafetensorsNames}");
            if (t.device_type != DeviceType.CPU)
                throw new CheckpointException($"'{path}': tensor '{key}' is on {t.device}; move it to the CPU (tensor.cpu()) before saving");
        }

        // Header: __metadata__ first, then tensors in ordinal key order, offsets packed back to back.
        var buffer = new MemoryStream();
        long offset = 0;
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            if (metadata is not null)
            {
                w.WriteStartObject(MetadataKey);
                foreach (var (k, v) in metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                {
                    if (k is null || v is null)
                        throw new CheckpointException($"'{path}': metadata entries must be non-null strings (key '{k}'); drop or fill that entry");
                    w.WriteString(k, v);
                }
                w.WriteEndObject();
            }
            foreach (var (key, t) in items)
            {
                DTypes.TryToSafetensors(t.dtype, out var dt);
                long bytes = checked(t.numel() * t.element_size());
                w.WriteStartObject(key);
                w.WriteString("dtype", dt);
                w.WriteStartArray("shape");
                foreach (var d in t.shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + bytes);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += bytes;
            }
            w.WriteEndObject();
        }
        int pad = (int)((8 - buffer.Length % 8) % 8);
        for (int i = 0; i < pad; i++) buffer.WriteByte((byte)' ');

        string tmp = path + ".tmp";
        try
        {
            using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
            {
                Span<byte> len = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)buffer.Length);
                fs.Write(len);
                buffer.Position = 0;
                buffer.CopyTo(fs);
                foreach (var (_, t) in items)
                {
                    if (t.is_contiguous())
                    {
                        TensorBytes.WriteFrom(t, fs);
                    }
                    else
                    {
                        using var c = t.contiguous();
                        TensorBytes.WriteFrom(c, fs);
                    }
                }
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, path, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    private static FileStream OpenRead(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        try
        {
            return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        }
        catch (FileNotFoundException)
        {
            throw new CheckpointException($"'{path}': file not found; check the path");
        }
        catch (DirectoryNotFoundException)
        {
            throw new CheckpointException($"'{path}': directory not found; check the path");
        }
    }

    /// <summary>Parses and fully validates the header. The stream is left positioned anywhere.</summary>
    internal static Header ReadHeader(FileStream fs, string path)
    {
        if (!BitConverter.IsLittleEndian)
            throw new CheckpointException($"'{path}': safetensors data is little-endian and this machine is not; use a little-endian machine");
        long fileLength = fs.Length;
        Span<byte> lenBytes = stackalloc byte[8];
        if (fileLength < 8 || fs.ReadAtLeast(lenBytes, 8, throwOnEndOfStream: false) < 8)
            throw new CheckpointException($"'{path}': file is {fileLength} bytes, too short for a safetensors header length; the file is truncated or not safetensors");
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(lenBytes);
        if (n > MaxHeaderBytes)
            throw new CheckpointException($"'{path}': header length {n} exceeds the {MaxHeaderBytes}-byte limit; the file is corrupt or not safetensors");
        if ((long)n + 8 > fileLength)
            throw new CheckpointException($"'{path}': header length {n} runs past the end of the {fileLength}-byte file; the file is truncated or not safetensors");
        if (n < 2)
            throw new CheckpointException($"'{path}': header length {n} is too small for a JSON object; the file is corrupt or not safetensors");

        var headerBytes = new byte[n];
        fs.ReadExactly(headerBytes);
        long dataStart = 8 + (long)n;
        long dataLength = fileLength - dataStart;

        string json;
        try
        {
            json = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(headerBytes);
        }
        catch (DecoderFallbackException)
        {
            throw new CheckpointException($"'{path}': header is not valid UTF-8; the file is corrupt or not safetensors");
        }

        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException ex)
        {
            throw new CheckpointException($"'{path}': header is not valid JSON ({OneLine(ex.Message)}); the file is corrupt or not safetensors");
        }

        using (doc)
        {
            try
            {
                return ParseHeader(doc, path, dataStart, dataLength);
            }
            catch (InvalidOperationException ex)
            {
                // JsonDocument accepts escapes such as "\ud800" (a lone surrogate) that cannot become a .NET string.
                throw new CheckpointException($"'{path}': header holds a string that is not valid Unicode ({OneLine(ex.Message)}); the file is corrupt");
            }
        }
    }

    private static Header ParseHeader(JsonDocument doc, string path, long dataStart, long dataLength)
    {
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
            throw new CheckpointException($"'{path}': header is JSON {doc.RootElement.ValueKind}, not an object; the file is corrupt or not safetensors");

        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        var entries = new List<Entry>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var prop in doc.RootElement.EnumerateObject())
        {
            string key = prop.Name;
            if (!seen.Add(key))
                throw new CheckpointException($"'{path}': header key '{key}' appears twice; the file is corrupt");
            if (key == MetadataKey)
            {
                if (prop.Value.ValueKind != JsonValueKind.Object)
                    throw new CheckpointException($"'{path}': '{MetadataKey}' must be an object of strings, found {prop.Value.ValueKind}; the file is corrupt");
                foreach (var m in prop.Value.EnumerateObject())
                {
                    if (m.Value.ValueKind != JsonValueKind.String)
                        throw new CheckpointException($"'{path}': metadata entry '{m.Name}' is {m.Value.ValueKind}, but safetensors metadata values must be strings; the file is corrupt");
                    metadata[m.Name] = m.Value.GetString()!;
                }
                continue;
            }
            entries.Add(ParseEntry(path, key, prop.Value, dataLength));
        }

        // Offsets must not overlap: sort by begin and compare neighbours.
        var byBegin = entries.Where(e => e.End > e.Begin).OrderBy(e => e.Begin).ToList();
        for (int i = 1; i < byBegin.Count; i++)
        {
            if (byBegin[i].Begin < byBegin[i - 1].End)
                throw new CheckpointException(
                    $"'{path}': data of tensor '{byBegin[i].Key}' [{byBegin[i].Begin}, {byBegin[i].End}) overlaps tensor '{byBegin[i - 1].Key}' [{byBegin[i - 1].Begin}, {byBegin[i - 1].End}); the file is corrupt");
        }
        return new Header(dataStart, entries, metadata);
    }

    private static Entry ParseEntry(string path, string key, JsonElement v, long dataLength)
    {
        if (v.ValueKind != JsonValueKind.Object)
            throw new CheckpointException($"'{path}': header entry '{key}' is {v.ValueKind}, not an object with dtype/shape/data_offsets; the file is corrupt");
        if (!v.TryGetProperty("dtype", out var dtypeEl) || dtypeEl.ValueKind != JsonValueKind.String)
            throw new CheckpointException($"'{path}': tensor '{key}' has no string 'dtype'; the file is corrupt");
        string dtype = dtypeEl.GetString()!;
        if (!DTypes.TryFromSafetensors(dtype, out var type, out int size))
            throw new CheckpointException($"'{path}': tensor '{key}' has dtype '{dtype}', which is not supported (known: {DTypes.KnownSafetensorsNames}); convert it before loading");

        if (!v.TryGetProperty("shape", out var shapeEl) || shapeEl.ValueKind != JsonValueKind.Array)
            throw new CheckpointException($"'{path}': tensor '{key}' has no 'shape' array; the file is corrupt");
        if (shapeEl.GetArrayLength() > PickleVm.MaxDims)
            throw new CheckpointException($"'{path}': tensor '{key}' has {shapeEl.GetArrayLength()} dimensions, over the {PickleVm.MaxDims}-dimension limit; the file is corrupt");
        var shape = new long[shapeEl.GetArrayLength()];
        long numel = 1, extent = 1;
        int i = 0;
        foreach (var d in shapeEl.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long dim) || dim < 0)
                throw new CheckpointException($"'{path}': tensor '{key}' has shape entry {d.GetRawText()}, which is not a non-negative integer; the file is corrupt");
            shape[i++] = dim;
            // libtorch computes contiguous strides over max(dim, 1) even when another dim is 0, so that product must fit too.
            try { numel = checked(numel * dim); extent = checked(extent * Math.Max(dim, 1)); }
            catch (OverflowException) { throw new CheckpointException($"'{path}': tensor '{key}' shape [{string.Join(", ", shape.Take(i))}...] has too many elements; the file is corrupt"); }
        }
        long expected;
        try { expected = checked(numel * size); }
        catch (OverflowException) { throw new CheckpointException($"'{path}': tensor '{key}' shape [{string.Join(", ", shape)}] is too large; the file is corrupt"); }

        if (!v.TryGetProperty("data_offsets", out var offEl) || offEl.ValueKind != JsonValueKind.Array || offEl.GetArrayLength() != 2)
            throw new CheckpointException($"'{path}': tensor '{key}' needs 'data_offsets' as [begin, end]; the file is corrupt");
        var offs = new long[2];
        for (int j = 0; j < 2; j++)
        {
            var o = offEl[j];
            if (o.ValueKind != JsonValueKind.Number || !o.TryGetInt64(out offs[j]) || offs[j] < 0)
                throw new CheckpointException($"'{path}': tensor '{key}' has data offset {o.GetRawText()}, which is not a non-negative integer; the file is corrupt");
        }
        long begin = offs[0], end = offs[1];
        if (begin > end)
            throw new CheckpointException($"'{path}': tensor '{key}' has data_offsets [{begin}, {end}] with begin after end; the file is corrupt");
        if (end > dataLength)
            throw new CheckpointException($"'{path}': tensor '{key}' data_offsets end {end} is past the {dataLength}-byte data section; the file is truncated");
        if (end - begin != expected)
            throw new CheckpointException($"'{path}': tensor '{key}' spans {end - begin} bytes but {dtype} shape [{string.Join(", ", shape)}] needs {expected}; the file is corrupt");
        return new Entry(key, type, size, shape, begin, end);
    }

    private static string OneLine(string s) => s.ReplaceLineEndings(" ");
}
