using SkiaSharp;
using WeCoLoRA.Data;
using static TorchSharp.torch;

namespace WeCoLoRA.Visualization;

/// <summary>One model's cell of an attention figure: the image as that model saw it (preprocessed) and its rollout map.</summary>
/// <param name="Map">[grid, grid] in [0, 1].</param>
public sealed record AttentionPanel(RgbImage Image, Tensor Map);

/// <summary>One image's row: its name, the original pixels, and a panel per model.</summary>
public sealed record AttentionRow(string Name, RgbImage Original, IReadOnlyList<AttentionPanel> Panels);

/// <summary>PNG figures: the attention grid (SkiaSharp) and the labelled scatter of an embedding (ScottPlot).</summary>
public static class Figures
{
    const int Pad = 8, TitleHeight = 26, CaptionHeight = 20;

    /// <summary>
    /// Rows = images, columns = the original image then one per model (titled <paramref name="modelNames"/>); each model cell
    /// is the preprocessed image scaled to <paramref name="cellSize"/> with its rollout map (bilinear) in a jet colormap on top.
    /// </summary>
    public static void SaveAttentionGrid(string path, IReadOnlyList<string> modelNames, IReadOnlyList<AttentionRow> rows, int cellSize = 224, double alpha = 0.5)
    {
        if (rows.Count == 0) throw new ArgumentException("an attention figure needs at least one image");
        if (rows.Any(r => r.Panels.Count != modelNames.Count)) throw new ArgumentException("every row needs one panel per model");
        int cols = modelNames.Count + 1;
        int width = cols * cellSize + (cols + 1) * Pad;
        int height = TitleHeight + rows.Count * (cellSize + CaptionHeight + Pad) + Pad;
        using var surface = SKSurface.Create(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Premul));
        var canvas = surface.Canvas;
        canvas.Clear(SKColors.White);
        using var font = new SKFont(Typeface(), 15);
        using var small = new SKFont(Typeface(), 12);
        using var ink = new SKPaint { Color = SKColors.Black, IsAntialias = true };
        string[] titles = ["image", .. modelNames];
        for (int c = 0; c < cols; c++)
            DrawFitted(canvas, titles[c], ColumnX(c, cellSize) + cellSize / 2f, TitleHeight - 8, cellSize, font, ink);
        for (int r = 0; r < rows.Count; r++)
        {
            var row = rows[r];
            int y = TitleHeight + r * (cellSize + CaptionHeight + Pad);
            DrawImage(canvas, Letterbox(row.Original, cellSize), ColumnX(0, cellSize), y);
            DrawFitted(canvas, row.Name, ColumnX(0, cellSize) + cellSize / 2f, y + cellSize + 15, cellSize, small, ink);
            for (int m = 0; m < row.Panels.Count; m++)
                DrawImage(canvas, Overlay(row.Panels[m].Image, row.Panels[m].Map, cellSize, alpha), ColumnX(m + 1, cellSize), y);
        }
        WritePng(surface, path);
    }

    static int ColumnX(int column, int cellSize) => Pad + column * (cellSize + Pad);

    /// <summary>The image scaled (bilinear) to size × size with the map upsampled bilinearly, jet-coloured and blended in at <paramref name="alpha"/>.</summary>
    public static RgbImage Overlay(RgbImage image, Tensor map, int size, double alpha = 0.5)
    {
        var scaled = Transforms.Resize(image, size, size, Interpolation.Bilinear);
        using var up = AttentionRollout.Upsample(map, size, size);
        var values = up.data<float>().ToArray();
        var result = new RgbImage(size, size);
        for (int i = 0; i < values.Length; i++)
        {
            var (r, g, b) = Jet(values[i]);
            result.Pixels[3 * i] = Blend(scaled.Pixels[3 * i], r, alpha);
            result.Pixels[3 * i + 1] = Blend(scaled.Pixels[3 * i + 1], g, alpha);
            result.Pixels[3 * i + 2] = Blend(scaled.Pixels[3 * i + 2], b, alpha);
        }
        return result;
    }

    static byte Blend(byte under, byte over, double alpha) => (byte)Math.Clamp(Math.Round((1 - alpha) * under + alpha * over), 0, 255);

    /// <summary>matplotlib's jet, piecewise linear: blue (0) → cyan → yellow → red (1).</summary>
    public static (byte R, byte G, byte B) Jet(double v)
    {
        v = double.IsNaN(v) ? 0 : Math.Clamp(v, 0, 1);
        static byte Channel(double x) => (byte)Math.Round(255 * Math.Clamp(x, 0, 1));
        return (Channel(1.5 - Math.Abs(4 * v - 3)), Channel(1.5 - Math.Abs(4 * v - 2)), Channel(1.5 - Math.Abs(4 * v - 1)));
    }

    /// <summary>The image scaled to fit size × size (aspect kept, bilinear) and centred on white.</summary>
    static RgbImage Letterbox(RgbImage image, int size)
    {
        double s = (double)size / Math.Max(image.Width, image.Height);
        int w = Math.Max(1, (int)Math.Round(image.Width * s)), h = Math.Max(1, (int)Math.Round(image.Height * s));
        var scaled = Transforms.Resize(image, w, h, Interpolation.Bilinear);
        var result = new RgbImage(size, size);
        Array.Fill(result.Pixels, (byte)255);
        int left = (size - w) / 2, top = (size - h) / 2;
        for (int y = 0; y < h; y++)
            Array.Copy(scaled.Pixels, y * w * 3, result.Pixels, ((top + y) * size + left) * 3, w * 3);
        return result;
    }

    static void DrawImage(SKCanvas canvas, RgbImage image, int x, int y)
    {
        using var bitmap = new SKBitmap(new SKImageInfo(image.Width, image.Height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        var rgba = new byte[image.Width * image.Height * 4];
        for (int i = 0, n = image.Width * image.Height; i < n; i++)
        {
            rgba[4 * i] = image.Pixels[3 * i];
            rgba[4 * i + 1] = image.Pixels[3 * i + 1];
            rgba[4 * i + 2] = image.Pixels[3 * i + 2];
            rgba[4 * i + 3] = 255;
        }
        System.Runtime.InteropServices.Marshal.Copy(rgba, 0, bitmap.GetPixels(), rgba.Length);
        using var skImage = SKImage.FromBitmap(bitmap);
        canvas.DrawImage(skImage, x, y, new SKSamplingOptions(SKFilterMode.Nearest));
    }

    /// <summary>Centred text, shortened with an ellipsis (from the left, so a file name's end stays) to fit <paramref name="maxWidth"/>.</summary>
    static void DrawFitted(SKCanvas canvas, string text, float centerX, float baseline, float maxWidth, SKFont font, SKPaint paint)
    {
        var shown = text;
        while (shown.Length > 1 && font.MeasureText(shown) > maxWidth - 4)
            shown = "…" + shown[Math.Min(shown.Length, 2)..];
        canvas.DrawText(shown, centerX, baseline, SKTextAlign.Center, font, paint);
    }

    static SKTypeface? typeface;

    /// <summary>A face with glyphs: the platform's sans, else DejaVu Sans from its usual Debian path (the NoDependencies Skia build may have no font manager).</summary>
    static SKTypeface Typeface()
    {
        if (typeface is not null) return typeface;
        var candidates = new Func<SKTypeface?>[]
        {
            () => SKFontManager.Default.MatchFamily("DejaVu Sans"),
            () => SKTypeface.FromFamilyName("sans-serif"),
            () => File.Exists("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf") ? SKTypeface.FromFile("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf") : null,
        };
        foreach (var make in candidates)
            if (make() is { GlyphCount: > 0 } face) return typeface = face;
        return typeface = SKTypeface.Default;
    }

    static void WritePng(SKSurface surface, string path)
    {
        using var image = surface.Snapshot();
        using var data = image.Encode(SKEncodedImageFormat.Png, 100);
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        using var file = File.Create(path);
        data.SaveTo(file);
    }

    /// <summary>
    /// A scatter of 2-D points coloured by label (Category10, or Category20 beyond 10 classes) with a legend of the class names;
    /// one colour and no legend when <paramref name="classes"/> is null or a label is negative.
    /// </summary>
    public static void SaveScatter(string path, Tensor xy, IReadOnlyList<int> labels, IReadOnlyList<string>? classes, string title,
        int width = 900, int height = 700)
    {
        if (xy.dim() != 2 || xy.shape[1] != 2 || xy.shape[0] != labels.Count)
            throw new ArgumentException($"a scatter needs [N, 2] points and N labels; got [{string.Join(", ", xy.shape)}] and {labels.Count}");
        var points = xy.to(float64).cpu().data<double>().ToArray();
        var plot = new ScottPlot.Plot();
        plot.Font.Set("DejaVu Sans"); // ScottPlot falls back to its own choice when the family is missing
        plot.Title(title);
        plot.Axes.Bottom.Label.Text = "t-SNE 1";
        plot.Axes.Left.Label.Text = "t-SNE 2";
        bool labelled = classes is { Count: > 0 } && labels.All(l => l >= 0 && l < classes.Count);
        ScottPlot.IPalette palette = labelled && classes!.Count > 10 ? new ScottPlot.Palettes.Category20() : new ScottPlot.Palettes.Category10();
        var groups = labels.Select((l, i) => (l: labelled ? l : 0, i)).GroupBy(p => p.l).OrderBy(g => g.Key);
        foreach (var group in groups)
        {
            var xs = group.Select(p => points[2 * p.i]).ToArray();
            var ys = group.Select(p => points[2 * p.i + 1]).ToArray();
            var scatter = plot.Add.ScatterPoints(xs, ys);
            scatter.MarkerSize = labels.Count > 2000 ? 3 : 6;
            scatter.Color = palette.GetColor(group.Key);
            if (labelled) scatter.LegendText = classes![group.Key];
        }
        if (labelled && classes!.Count <= 40) plot.ShowLegend(ScottPlot.Edge.Right);
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        plot.SavePng(path, width, height);
    }
}
