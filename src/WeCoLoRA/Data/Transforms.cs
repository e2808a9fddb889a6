namespace WeCoLoRA.Data;

public enum Interpolation { Bicubic, Bilinear, Nearest }

/// <summary>
/// torchvision-on-PIL image transforms. Resizing reproduces Pillow 9's <c>Image.resize</c> bit for bit (Resample.c:
/// separable antialiased convolution, horizontal pass then vertical, 22-bit fixed-point coefficients, uint8 rounding and
/// clamping after each pass; NEAREST via Geometry.c's affine scale), since that is what torchvision applies to PIL images.
/// </summary>
public static class Transforms
{
    private const int PrecisionBits = 32 - 8 - 2;

    public static RgbImage Resize(RgbImage img, int width, int height, Interpolation interp)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
        if (img.Width == width && img.Height == height)
            return img.Clone(); // Pillow returns a copy, untouched
        return interp switch
        {
            Interpolation.Nearest => ResizeNearest(img, width, height),
            Interpolation.Bilinear => ResizeConvolution(img, width, height, Bilinear, 1.0),
            Interpolation.Bicubic => ResizeConvolution(img, width, height, Bicubic, 2.0),
            _ => throw new ArgumentOutOfRangeException(nameof(interp), interp, null),
        };
    }

    /// <summary>torchvision <c>Resize(int)</c>: shorter side becomes <paramref name="size"/>, longer = int(size * long / short).</summary>
    public static RgbImage ResizeShorter(RgbImage img, int size, Interpolation interp)
    {
        var (w, h) = ShorterSideSize(img.Width, img.Height, size);
        return Resize(img, w, h, interp);
    }

    /// <summary>Output (width, height) of torchvision <c>Resize(size)</c> for an image of the given size.</summary>
    public static (int Width, int Height) ShorterSideSize(int width, int height, int size)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(size);
        bool wide = width > height;
        int shortSide = wide ? height : width, longSide = wide ? width : height;
        int newLong = (int)((double)size * longSide / shortSide);
        return wide ? (newLong, size) : (size, newLong);
    }

    /// <summary>torchvision CenterCrop: top = int(round((h - size) / 2.0)) (round half to even), zero padding when the image is smaller.</summary>
    public static RgbImage CenterCrop(RgbImage img, int size)
    {
        var (top, left) = CenterCropOffsets(img.Height, img.Width, size);
        return Crop(img, top, left, size, size);
    }

    /// <summary>Top/left offsets torchvision's CenterCrop uses (negative where it pads).</summary>
    public static (int Top, int Left) CenterCropOffsets(int height, int width, int size)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(size);
        static int Offset(int image, int crop) =>
            crop > image ? -((crop - image) / 2) : (int)Math.Round((image - crop) / 2.0, MidpointRounding.ToEven);
        return (Offset(height, size), Offset(width, size));
    }

    /// <summary>PIL <c>Image.crop((left, top, left + width, top + height))</c>: regions outside the image are black.</summary>
    public static RgbImage Crop(RgbImage img, int top, int left, int height, int width)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
        var dst = new RgbImage(width, height);
        int x0 = Math.Max(0, left), x1 = Math.Min(img.Width, left + width);
        if (x1 <= x0) return dst;
        for (int y = 0; y < height; y++)
        {
            int sy = top + y;
            if (sy < 0 || sy >= img.Height) continue;
            Array.Copy(img.Pixels, ((long)sy * img.Width + x0) * 3, dst.Pixels, ((long)y * width + (x0 - left)) * 3, (x1 - x0) * 3);
        }
        return dst;
    }

    public static RgbImage HorizontalFlip(RgbImage img)
    {
        var dst = new RgbImage(img.Width, img.Height);
        int w = img.Width;
        for (int y = 0; y < img.Height; y++)
        {
            long row = (long)y * w * 3;
            for (int x = 0; x < w; x++)
            {
                long s = row + x * 3L, d = row + (w - 1 - x) * 3L;
                dst.Pixels[d] = img.Pixels[s];
                dst.Pixels[d + 1] = img.Pixels[s + 1];
                dst.Pixels[d + 2] = img.Pixels[s + 2];
            }
        }
        return dst;
    }

    /// <summary>
    /// torchvision <c>RandomResizedCrop.get_params</c> with draws from <paramref name="rng"/>: up to 10 tries of
    /// area ~ U(scale) and log-aspect ~ U(log ratio), then the central fallback.
    /// </summary>
    public static (int Top, int Left, int Height, int Width) RandomResizedCropParams(
        int height, int width, (double Min, double Max) scale, (double Min, double Max) ratio, Random rng)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        double area = (double)height * width;
        double logMin = Math.Log(ratio.Min), logMax = Math.Log(ratio.Max);
        for (int attempt = 0; attempt < 10; attempt++)
        {
            double targetArea = area * (scale.Min + (scale.Max - scale.Min) * rng.NextDouble());
            double aspect = Math.Exp(logMin + (logMax - logMin) * rng.NextDouble());
            int w = (int)Math.Round(Math.Sqrt(targetArea * aspect), MidpointRounding.ToEven);
            int h = (int)Math.Round(Math.Sqrt(targetArea / aspect), MidpointRounding.ToEven);
            if (w > 0 && w <= width && h > 0 && h <= height)
            {
                int i = rng.Next(0, height - h + 1);
                int j = rng.Next(0, width - w + 1);
                return (i, j, h, w);
            }
        }
        double inRatio = (double)width / height;
        int fw, fh;
        if (inRatio < Math.Min(ratio.Min, ratio.Max))
        {
            fw = width;
            fh = (int)Math.Round(fw / Math.Min(ratio.Min, ratio.Max), MidpointRounding.ToEven);
        }
        else if (inRatio > Math.Max(ratio.Min, ratio.Max))
        {
            fh = height;
            fw = (int)Math.Round(fh * Math.Max(ratio.Min, ratio.Max), MidpointRounding.ToEven);
        }
        else
        {
            fw = width;
            fh = height;
        }
        fh = Math.Clamp(fh, 1, height);
        fw = Math.Clamp(fw, 1, width);
        return ((height - fh) / 2, (width - fw) / 2, fh, fw);
    }

    /// <summary>
    /// torchvision ToTensor + Normalize into CHW floats, bit-exact with PyTorch's float32 ops: (float(p) / 255 - mean[c]) / std[c].
    /// </summary>
    public static void ToNormalizedChw(RgbImage img, float[] mean, float[] std, Span<float> destination)
    {
        if (mean.Length != 3 || std.Length != 3)
            throw new ArgumentException("mean and std need 3 values (R, G, B).");
        int plane = img.Width * img.Height;
        if (destination.Length < 3 * plane)
            throw new ArgumentException($"destination holds {destination.Length} floats, needs {3 * plane}.", nameof(destination));
        Span<float> lut = stackalloc float[3 * 256];
        for (int c = 0; c < 3; c++)
            for (int v = 0; v < 256; v++)
                lut[c * 256 + v] = ((float)v / 255f - mean[c]) / std[c];
        var px = img.Pixels;
        var r = destination[..plane];
        var g = destination.Slice(plane, plane);
        var b = destination.Slice(2 * plane, plane);
        for (int i = 0, s = 0; i < plane; i++, s += 3)
        {
            r[i] = lut[px[s]];
            g[i] = lut[256 + px[s + 1]];
            b[i] = lut[512 + px[s + 2]];
        }
    }

    // ---- Pillow Resample.c ----

    private static double Bilinear(double x)
    {
        if (x < 0.0) x = -x;
        return x < 1.0 ? 1.0 - x : 0.0;
    }

    private static double Bicubic(double x)
    {
        const double a = -0.5;
        if (x < 0.0) x = -x;
        if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
        if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
        return 0.0;
    }

    /// <summary>precompute_coeffs + normalize_coeffs_8bpc: per output index, first input index, count, and fixed-point weights.</summary>
    private static (int[] Bounds, int[] Kernel, int KSize) Coefficients(int inSize, int outSize, Func<double, double> filter, double filterSupport)
    {
        double scale = (double)inSize / outSize;
        double filterScale = scale < 1.0 ? 1.0 : scale;
        double support = filterSupport * filterScale;
        int ksize = (int)Math.Ceiling(support) * 2 + 1;
        var bounds = new int[outSize * 2];
        var kk = new int[outSize * ksize];
        var k = new double[ksize];
        for (int xx = 0; xx < outSize; xx++)
        {
            double center = (xx + 0.5) * scale;
            double ww = 0.0;
            double ss = 1.0 / filterScale;
            int xmin = (int)(center - support + 0.5);
            if (xmin < 0) xmin = 0;
            int xmax = (int)(center + support + 0.5);
            if (xmax > inSize) xmax = inSize;
            xmax -= xmin;
            for (int x = 0; x < xmax; x++)
            {
                double w = filter((x + xmin - center + 0.5) * ss);
                k[x] = w;
                ww += w;
            }
            for (int x = 0; x < xmax; x++)
            {
                if (ww != 0.0) k[x] /= ww;
                double v = k[x] * (1 << PrecisionBits);
                kk[xx * ksize + x] = v < 0 ? (int)(-0.5 + v) : (int)(0.5 + v);
            }
            bounds[xx * 2] = xmin;
            bounds[xx * 2 + 1] = xmax;
        }
        return (bounds, kk, ksize);
    }

    private static byte Clip8(int v)
    {
        if (v >= 1 << PrecisionBits << 8) return 255;
        if (v <= 0) return 0;
        return (byte)(v >> PrecisionBits);
    }

    private static RgbImage ResizeConvolution(RgbImage img, int width, int height, Func<double, double> filter, double support)
    {
        var (bh, kh, kw) = Coefficients(img.Width, width, filter, support);
        var (bv, kv, kvs) = Coefficients(img.Height, height, filter, support);
        bool needH = width != img.Width, needV = height != img.Height;
        var src = img.Pixels;
        int srcW = img.Width;
        int rowFirst = 0, rows = img.Height;
        if (needH)
        {
            // Only the rows the vertical pass reads are resampled horizontally (as Pillow does).
            rowFirst = bv[0];
            int rowLast = bv[height * 2 - 2] + bv[height * 2 - 1];
            rows = rowLast - rowFirst;
            var tmp = new byte[(long)width * rows * 3];
            ForEachRow(rows, y =>
            {
                long inRow = (long)(y + rowFirst) * srcW * 3, outRow = (long)y * width * 3;
                for (int xx = 0; xx < width; xx++)
                {
                    int xmin = bh[xx * 2], xmax = bh[xx * 2 + 1], kOff = xx * kw;
                    int s0 = 1 << (PrecisionBits - 1), s1 = s0, s2 = s0;
                    long p = inRow + xmin * 3L;
                    for (int x = 0; x < xmax; x++, p += 3)
                    {
                        int k = kh[kOff + x];
                        s0 += src[p] * k;
                        s1 += src[p + 1] * k;
                        s2 += src[p + 2] * k;
                    }
                    long o = outRow + xx * 3L;
                    tmp[o] = Clip8(s0);
                    tmp[o + 1] = Clip8(s1);
                    tmp[o + 2] = Clip8(s2);
                }
            });
            src = tmp;
            srcW = width;
        }
        if (!needV)
            return new RgbImage(width, height, src == img.Pixels ? (byte[])src.Clone() : src);
        var dst = new byte[(long)width * height * 3];
        int stride = srcW * 3;
        var input = src;
        ForEachRow(height, yy =>
        {
            int ymin = bv[yy * 2] - rowFirst, ymax = bv[yy * 2 + 1], kOff = yy * kvs;
            long outRow = (long)yy * width * 3;
            for (int i = 0; i < stride; i++)
            {
                int s = 1 << (PrecisionBits - 1);
                long p = (long)ymin * stride + i;
                for (int y = 0; y < ymax; y++, p += stride)
                    s += input[p] * kv[kOff + y];
                dst[outRow + i] = Clip8(s);
            }
        });
        return new RgbImage(width, height, dst);
    }

    /// <summary>Pillow's NEAREST resize: ImagingScaleAffine with incrementally accumulated source coordinates.</summary>
    private static RgbImage ResizeNearest(RgbImage img, int width, int height)
    {
        double a0 = (double)img.Width / width, a4 = (double)img.Height / height;
        var xin = new int[width];
        double xo = a0 * 0.5;
        for (int x = 0; x < width; x++, xo += a0)
            xin[x] = xo < 0.0 ? -1 : (int)xo;
        var dst = new RgbImage(width, height);
        double yo = a4 * 0.5;
        for (int y = 0; y < height; y++, yo += a4)
        {
            int yi = yo < 0.0 ? -1 : (int)yo;
            if (yi < 0 || yi >= img.Height) continue;
            long inRow = (long)yi * img.Width * 3, outRow = (long)y * width * 3;
            for (int x = 0; x < width; x++)
            {
                int xi = xin[x];
                if (xi < 0 || xi >= img.Width) continue;
                long s = inRow + xi * 3L, d = outRow + x * 3L;
                dst.Pixels[d] = img.Pixels[s];
                dst.Pixels[d + 1] = img.Pixels[s + 1];
                dst.Pixels[d + 2] = img.Pixels[s + 2];
            }
        }
        return dst;
    }

    // Serial on purpose: resizes already run in parallel across BatchLoader workers.
    private static void ForEachRow(int count, Action<int> body)
    {
        for (int i = 0; i < count; i++) body(i);
    }
}
