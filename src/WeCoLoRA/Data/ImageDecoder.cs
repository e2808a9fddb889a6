using System.Runtime.InteropServices;
using SkiaSharp;

namespace WeCoLoRA.Data;

/// <summary>An image that could not be decoded; the message is one line naming the file and why.</summary>
public sealed class ImageDecodeException(string message) : Exception(message);

/// <summary>An 8-bit RGB image, pixels in HWC order (row-major, 3 bytes per pixel).</summary>
public sealed class RgbImage
{
    public int Width { get; }
    public int Height { get; }
    public byte[] Pixels { get; }

    public RgbImage(int width, int height, byte[] pixels)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
        if (pixels.LongLength != (long)width * height * 3)
            throw new ArgumentException($"RgbImage {width}x{height} needs {(long)width * height * 3} bytes, got {pixels.LongLength}.", nameof(pixels));
        Width = width;
        Height = height;
        Pixels = pixels;
    }

    public RgbImage(int width, int height) : this(width, height, new byte[checked(width * height * 3)]) { }

    public RgbImage Clone() => new(Width, Height, (byte[])Pixels.Clone());
}

/// <summary>
/// Decodes JPEG (RGB, grayscale, CMYK), PNG (gray, gray+alpha, RGB, RGBA, palette, 8/16-bit), BMP, GIF (first frame) and WebP
/// with SkiaSharp into 8-bit RGB, matching Pillow's <c>Image.open(path).convert("RGB")</c>: alpha is dropped without compositing,
/// 16-bit samples keep their high byte, except 16-bit grayscale PNG which Pillow opens as mode "I" and clamps to 255.
/// The format is sniffed from the content, not the extension (as Pillow does).
/// </summary>
public static class ImageDecoder
{
    /// <summary>Pillow's decompression-bomb limit (<c>Image.MAX_IMAGE_PIXELS</c>).</summary>
    public const long DefaultMaxPixels = 178_956_970;

    public static RgbImage Decode(string path, long maxPixels = DefaultMaxPixels)
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            throw new ImageDecodeException($"Cannot read image '{path}': {e.Message}");
        }
        return Decode(bytes, path, maxPixels);
    }

    /// <summary>Decodes an encoded image held in memory; <paramref name="name"/> is only used in error messages.</summary>
    public static RgbImage Decode(ReadOnlySpan<byte> encoded, string name, long maxPixels = DefaultMaxPixels)
    {
        if (encoded.Length == 0)
            throw new ImageDecodeException($"Cannot decode image '{name}': the file is empty.");
        try
        {
            return DecodeCore(encoded, name, maxPixels);
        }
        catch (ImageDecodeException)
        {
            throw;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new ImageDecodeException($"Cannot decode image '{name}': {e.GetType().Name}: {e.Message}");
        }
    }

    private static RgbImage DecodeCore(ReadOnlySpan<byte> encoded, string name, long maxPixels)
    {
        using var data = SKData.CreateCopy(encoded);
        using var codec = SKCodec.Create(data);
        if (codec is null)
            throw new ImageDecodeException($"Cannot decode image '{name}': not a recognised image format (or a corrupt header).");

        var info = codec.Info;
        int width = info.Width, height = info.Height;
        if (width <= 0 || height <= 0)
            throw new ImageDecodeException($"Cannot decode image '{name}': invalid dimensions {width}x{height}.");
        long pixels = (long)width * height;
        if (pixels > maxPixels)
            throw new ImageDecodeException($"Refusing to decode image '{name}': {width}x{height} = {pixels} pixels exceeds the limit of {maxPixels} (possible decompression bomb).");
        if (pixels * 8 > Array.MaxLength)
            throw new ImageDecodeException($"Refusing to decode image '{name}': {width}x{height} is too large to hold in memory.");

        if (codec.EncodedFormat == SKEncodedImageFormat.Png && Png16Gray.Applies(encoded))
        {
            // Skia would hand us only the high byte; Pillow clamps the 16-bit value instead (mode "I" -> "RGB").
            // We still let Skia validate the whole file first so corrupt data fails the same way as other PNGs.
            DecodeRgb(codec, name, width, height);
            return new RgbImage(width, height, Png16Gray.DecodeClampedRgb(encoded, width, height, name));
        }
        return new RgbImage(width, height, DecodeRgb(codec, name, width, height));
    }

    private static byte[] DecodeRgb(SKCodec codec, string name, int width, int height)
    {
        long pixels = (long)width * height;
        // Rgba8888/unpremul: alpha never touches RGB (Pillow's convert("RGB") just drops it). 16-bit PNG samples arrive
        // as their high byte, as in Pillow. No destination colour space, so Skia converts no colours (Pillow ignores ICC too).
        var dstInfo = new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        var rgba = new byte[pixels * 4];
        SKCodecResult result;
        var handle = GCHandle.Alloc(rgba, GCHandleType.Pinned);
        try
        {
            // Frame 0: the first frame of a GIF / animated WebP.
            result = codec.GetPixels(dstInfo, handle.AddrOfPinnedObject(), width * 4, new SKCodecOptions(0));
        }
        finally
        {
            handle.Free();
        }
        if (result != SKCodecResult.Success)
            throw new ImageDecodeException($"Cannot decode image '{name}' ({codec.EncodedFormat}, {width}x{height}): {Describe(result)}.");

        var rgb = new byte[pixels * 3];
        for (long i = 0, o = 0; i < rgba.LongLength; i += 4, o += 3)
        {
            rgb[o] = rgba[i];
            rgb[o + 1] = rgba[i + 1];
            rgb[o + 2] = rgba[i + 2];
        }
        return rgb;
    }

    private static string Describe(SKCodecResult r) => r switch
    {
        SKCodecResult.IncompleteInput => "the file is truncated",
        SKCodecResult.ErrorInInput => "the file is corrupt",
        SKCodecResult.InvalidInput => "unrecognised or invalid data",
        SKCodecResult.InvalidConversion => "unsupported pixel format",
        SKCodecResult.Unimplemented => "unsupported variant of the format",
        _ => r.ToString(),
    };
}
