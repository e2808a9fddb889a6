using System.Buffers.Binary;
using System.IO.Compression;

namespace WeCoLoRA.Data;

/// <summary>
/// Minimal reader for non-interlaced 16-bit grayscale PNGs. Skia reduces them to 8 bits (high byte) before we can see them,
/// but Pillow opens them as 32-bit mode "I" and <c>convert("RGB")</c> clamps each value to 255, so the full samples are needed.
/// </summary>
internal static class Png16Gray
{
    /// <summary>True when the PNG header says 16-bit grayscale, non-interlaced.</summary>
    public static bool Applies(ReadOnlySpan<byte> png) =>
        png.Length >= 33 && png[12] == 'I' && png[13] == 'H' && png[14] == 'D' && png[15] == 'R'
        && png[24] == 16 && png[25] == 0 && png[28] == 0;

    /// <summary>Decodes to RGB with Pillow's I→RGB clamp; <paramref name="name"/> is for messages.</summary>
    public static byte[] DecodeClampedRgb(ReadOnlySpan<byte> png, int width, int height, string name)
    {
        using var idat = new MemoryStream();
        int pos = 8;
        bool sawEnd = false;
        while (pos + 8 <= png.Length)
        {
            int len = (int)Math.Min(BinaryPrimitives.ReadUInt32BigEndian(png[pos..]), int.MaxValue);
            var type = png.Slice(pos + 4, 4);
            if (pos + 12L + len > png.Length)
                throw new ImageDecodeException($"Cannot decode image '{name}': the file is truncated.");
            if (type.SequenceEqual("IDAT"u8))
                idat.Write(png.Slice(pos + 8, len));
            else if (type.SequenceEqual("IEND"u8))
            {
                sawEnd = true;
                break;
            }
            pos += 12 + len;
        }
        if (!sawEnd && idat.Length == 0)
            throw new ImageDecodeException($"Cannot decode image '{name}': no image data (truncated PNG).");

        int stride = checked(width * 2);
        var cur = new byte[stride];
        var prev = new byte[stride];
        var rgb = new byte[(long)width * height * 3];
        idat.Position = 0;
        try
        {
            using var z = new ZLibStream(idat, CompressionMode.Decompress);
            Span<byte> filter = stackalloc byte[1];
            for (int y = 0; y < height; y++)
            {
                z.ReadExactly(filter);
                z.ReadExactly(cur);
                Unfilter(filter[0], cur, prev, bpp: 2, name);
                for (int x = 0, o = y * width * 3; x < width; x++, o += 3)
                {
                    int v = (cur[2 * x] << 8) | cur[2 * x + 1];
                    byte b = (byte)Math.Min(v, 255);
                    rgb[o] = rgb[o + 1] = rgb[o + 2] = b;
                }
                (cur, prev) = (prev, cur);
            }
        }
        catch (Exception e) when (e is EndOfStreamException or InvalidDataException)
        {
            throw new ImageDecodeException($"Cannot decode image '{name}': corrupt or truncated PNG data ({e.Message}).");
        }
        return rgb;
    }

    private static void Unfilter(byte filter, Span<byte> cur, ReadOnlySpan<byte> prev, int bpp, string name)
    {
        switch (filter)
        {
            case 0: break;
            case 1: for (int i = bpp; i < cur.Length; i++) cur[i] += cur[i - bpp]; break;
            case 2: for (int i = 0; i < cur.Length; i++) cur[i] += prev[i]; break;
            case 3:
                for (int i = 0; i < cur.Length; i++)
                    cur[i] += (byte)(((i >= bpp ? cur[i - bpp] : 0) + prev[i]) >> 1);
                break;
            case 4:
                for (int i = 0; i < cur.Length; i++)
                {
                    int a = i >= bpp ? cur[i - bpp] : 0, b = prev[i], c = i >= bpp ? prev[i - bpp] : 0;
                    int p = a + b - c, pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
                    cur[i] += (byte)(pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
                }
                break;
            default:
                throw new ImageDecodeException($"Cannot decode image '{name}': invalid PNG filter type {filter}.");
        }
    }
}
