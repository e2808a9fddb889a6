using System.Buffers.Binary;
using System.IO.Compression;

namespace WeCoLoRA.Data;

/// <summary>An array read from an IDX file (the MNIST format): its dimensions and its unsigned bytes, row-major.</summary>
public sealed record IdxArray(int[] Dims, byte[] Data)
{
    public int Count => Dims[0];
}

/// <summary>
/// The IDX format of MNIST / Fashion-MNIST / KMNIST: magic <c>00 00 08 D</c> (unsigned bytes, D dimensions), D big-endian
/// int32 sizes, then the data. Gzipped files are recognised by content (1f 8b), whatever their name.
/// </summary>
public static class IdxFile
{
    /// <summary>Reads and validates an IDX file of unsigned bytes; errors are one-line <see cref="DataException"/>s naming the file.</summary>
    public static IdxArray Read(string path)
    {
        var bytes = DatasetFiles.ReadMaybeGzipped(path);
        if (bytes.Length < 4 || bytes[0] != 0 || bytes[1] != 0)
            throw new DataException($"IDX file '{path}' has a bad magic number {Hex(bytes, 4)} (expected 00 00 08 0D).");
        if (bytes[2] != 0x08)
            throw new DataException($"IDX file '{path}' holds data type 0x{bytes[2]:x2}; only unsigned bytes (0x08) are supported.");
        int ndims = bytes[3];
        if (ndims is < 1 or > 4)
            throw new DataException($"IDX file '{path}' declares {ndims} dimensions (expected 1 to 4).");
        int header = 4 + 4 * ndims;
        if (bytes.Length < header)
            throw new DataException($"IDX file '{path}' is truncated: {bytes.Length} bytes, shorter than its {header}-byte header.");
        var dims = new int[ndims];
        long total = 1;
        for (int i = 0; i < ndims; i++)
        {
            int d = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(4 + 4 * i));
            if (d <= 0)
                throw new DataException($"IDX file '{path}' has dimension {i} of size {d}.");
            dims[i] = d;
            total *= d;
        }
        if (bytes.Length - header != total)
            throw new DataException($"IDX file '{path}' has {bytes.Length - header} data bytes; its header [{string.Join(" x ", dims)}] needs {total}.");
        return new IdxArray(dims, bytes.AsSpan(header).ToArray());
    }

    /// <summary>Writes unsigned bytes as an IDX file (gzipped when <paramref name="gzip"/>); for tests and small exports.</summary>
    public static void Write(string path, int[] dims, ReadOnlySpan<byte> data, bool gzip = false)
    {
        using var file = File.Create(path);
        using Stream s = gzip ? new GZipStream(file, CompressionLevel.Fastest) : file;
        Span<byte> word = stackalloc byte[4];
        s.Write([0, 0, 8, (byte)dims.Length]);
        foreach (var d in dims)
        {
            BinaryPrimitives.WriteInt32BigEndian(word, d);
            s.Write(word);
        }
        s.Write(data);
    }

    private static string Hex(byte[] b, int n) => b.Length == 0 ? "(empty file)" : string.Join(' ', b.Take(n).Select(x => x.ToString("x2")));
}

/// <summary>Grayscale images [N, H, W] (one byte per pixel), loaded as RGB by replicating the channel (PIL's convert("RGB")).</summary>
public sealed class GrayImageSource(byte[] pixels, int count, int height, int width, string identity) : IImageSource
{
    public int Count { get; } = count;
    public int Height { get; } = height;
    public int Width { get; } = width;
    public string Identity { get; } = identity;

    public RgbImage Load(int index)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)index, (uint)Count, nameof(index));
        int n = Height * Width;
        var src = pixels.AsSpan(index * n, n);
        var rgb = new byte[3 * n];
        for (int i = 0; i < n; i++)
            rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = src[i];
        return new RgbImage(Width, Height, rgb);
    }
}

/// <summary>
/// CIFAR binary records: <paramref name="labelBytes"/> label bytes then 3072 pixel bytes (1024 R, 1024 G, 1024 B; rows of 32).
/// </summary>
public sealed class CifarImageSource(byte[] records, int labelBytes, string identity) : IImageSource
{
    public const int Side = 32, PixelBytes = 3 * Side * Side;

    public int RecordSize => labelBytes + PixelBytes;
    public int Count => records.Length / RecordSize;
    public string Identity { get; } = identity;

    /// <summary>Label byte <paramref name="which"/> (0 = the only label for CIFAR-10; for CIFAR-100 0 = coarse, 1 = fine).</summary>
    public int Label(int index, int which) => records[index * RecordSize + which];

    public RgbImage Load(int index)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)index, (uint)Count, nameof(index));
        var rec = records.AsSpan(index * RecordSize + labelBytes, PixelBytes);
        const int plane = Side * Side;
        var rgb = new byte[PixelBytes];
        for (int i = 0; i < plane; i++)
        {
            rgb[3 * i] = rec[i];
            rgb[3 * i + 1] = rec[plane + i];
            rgb[3 * i + 2] = rec[2 * plane + i];
        }
        return new RgbImage(Side, Side, rgb);
    }
}

static class DatasetFiles
{
    public static byte[] ReadMaybeGzipped(string path)
    {
        byte[] raw;
        try
        {
            raw = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DataException($"Cannot read '{path}': {e.Message}");
        }
        if (raw.Length < 2 || raw[0] != 0x1f || raw[1] != 0x8b)
            return raw;
        try
        {
            using var gz = new GZipStream(new MemoryStream(raw), CompressionMode.Decompress);
            using var ms = new MemoryStream();
            gz.CopyTo(ms);
            return ms.ToArray();
        }
        catch (InvalidDataException e)
        {
            throw new DataException($"Cannot decompress '{path}': {e.Message}");
        }
    }

    /// <summary>Path, size and modification time of each file, for cache keys.</summary>
    public static string Identity(params string[] files) =>
        string.Join(';', files.Select(f =>
        {
            var info = new FileInfo(f);
            return $"{info.FullName}|{info.Length}|{info.LastWriteTimeUtc.Ticks}";
        }));
}
