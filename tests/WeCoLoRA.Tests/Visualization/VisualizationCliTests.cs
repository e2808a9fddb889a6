using SkiaSharp;
using WeCoLoRA.Tests.Cli;

namespace WeCoLoRA.Tests.Visualization;

[Collection(nameof(ConsoleCollection))]
public sealed class VisualizationCliTests
{
    static string Samples
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "WeCoLoRA.slnx"))) dir = dir.Parent;
            Assert.NotNull(dir);
            return Path.Combine(dir.FullName, "samples", "fashion-mnist");
        }
    }

    static (int Width, int Height) PngSize(string path)
    {
        Assert.True(new FileInfo(path).Length > 1000, path);
        using var bitmap = SKBitmap.Decode(path);
        Assert.NotNull(bitmap);
        return (bitmap.Width, bitmap.Height);
    }

    [Fact]
    public void Attention_writes_a_grid_with_a_column_per_model()
    {
        var outFile = Path.Combine(Fixture.TempDir(), "attention.png");
        var images = Fixture.Path("models", "images");
        var (code, _, err) = CliRunner.Run("attention", "--model", Fixture.Path("models", "timm_hub"), "--model", Fixture.Path("models", "hf_vit"),
            "--images", Path.Combine(images, "a.png"), Path.Combine(images, "B.png"), Path.Combine(images, "sub", "d_gray.png"),
            "--out", outFile, "--head-fusion", "max", "--discard-ratio", "0.5", "--cell-size", "64");
        Assert.True(code == 0, err);
        var (w, h) = PngSize(outFile);
        Assert.Equal(3 * 64 + 4 * 8, w); // image column + two models, 8 px gaps
        Assert.True(h > 3 * 64, $"height {h}");
    }

    [Fact]
    public void Tsne_writes_a_scatter_and_the_coordinates()
    {
        var outFile = Path.Combine(Fixture.TempDir(), "tsne.png");
        var (code, _, err) = CliRunner.Run("tsne", "--model", Fixture.Path("models", "timm_hub"), "--data", Samples, "--out", outFile,
            "--perplexity", "5", "--iterations", "300", "--pool", "avg");
        Assert.True(code == 0, err);
        PngSize(outFile);
        var lines = File.ReadAllLines(Path.ChangeExtension(outFile, ".csv"));
        Assert.Equal("path,label,x,y", lines[0]);
        Assert.Equal(21, lines.Length);
        var first = lines[1].Split(',');
        Assert.Equal("ankle-boot/test_00000.png", first[0]);
        Assert.Equal("ankle-boot", first[1]);
        Assert.True(float.IsFinite(float.Parse(first[2], System.Globalization.CultureInfo.InvariantCulture)));
    }

    [Fact]
    public void Tsne_on_an_unlabelled_folder_leaves_labels_empty()
    {
        var outFile = Path.Combine(Fixture.TempDir(), "tsne.png");
        var (code, _, err) = CliRunner.Run("tsne", "--model", Fixture.Path("models", "timm_hub"), "--data", Fixture.Path("models", "images"),
            "--out", outFile, "--perplexity", "2", "--iterations", "100");
        Assert.True(code == 0, err);
        var lines = File.ReadAllLines(Path.ChangeExtension(outFile, ".csv"));
        Assert.Equal(5, lines.Length);
        Assert.Equal("B.png,", lines[1][..6]);
    }

    [Fact]
    public void Bad_inputs_get_one_line_errors()
    {
        var outFile = Path.Combine(Fixture.TempDir(), "x.png");
        var (code, _, err) = CliRunner.Run("tsne", "--model", Fixture.Path("models", "timm_hub"), "--data", Samples, "--out", outFile);
        Assert.Equal(1, code);
        Assert.Contains("--perplexity 30", err);
        Assert.Single(err.Trim().Split('\n'));

        (code, _, err) = CliRunner.Run("attention", "--model", Fixture.Path("models", "timm_hub"), "--images", "/no/such.png", "--out", outFile);
        Assert.Equal(1, code);
        Assert.Contains("/no/such.png", err);

        (code, _, err) = CliRunner.Run("attention", "--model", Fixture.Path("models", "timm_hub"), "--images", Fixture.Path("models", "images", "a.png"),
            "--out", outFile, "--discard-ratio", "1");
        Assert.Equal(1, code);
        Assert.Contains("discard ratio 1", err);
    }
}
