using System.Text.Json;
using WeCoLoRA.Data;
using WeCoLoRA.Tests.Cli;

namespace WeCoLoRA.Tests.Evaluation;

[Collection(nameof(ConsoleCollection))]
public sealed class ProbeKnnCliTests
{
    static string Samples()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "WeCoLoRA.slnx"))) dir = dir.Parent;
        Assert.NotNull(dir);
        return Path.Combine(dir.FullName, "samples", "fashion-mnist");
    }

    static string Model => Fixture.Path("models", "timm_hub");

    [Fact]
    public void Knn_and_probe_run_end_to_end_on_sample_images()
    {
        var tmp = Fixture.TempDir();
        var json = Path.Combine(tmp, "knn.json");
        var (code, stdout, stderr) = CliRunner.Run("knn", "--model", Model, "--train", Samples(), "--test", Samples(), "--k", "1", "--json", json);
        Assert.True(code == 0, stderr);
        Assert.Contains("top-1 100.00%", stdout); // each test image is its own nearest neighbour
        Assert.Contains("top-5", stdout);
        Assert.Equal(1, JsonDocument.Parse(File.ReadAllText(json)).RootElement.GetProperty("k").GetInt32());

        json = Path.Combine(tmp, "probe.json");
        var cache = Path.Combine(tmp, "cache");
        string[] args = ["probe", "--model", Model, "--train", Samples(), "--test", Samples(), "--epochs", "3", "--warmup-epochs", "1",
            "--batch-size", "8", "--json", json, "--cache", cache, "--pool", "avg"];
        (code, stdout, stderr) = CliRunner.Run(args);
        Assert.True(code == 0, stderr);
        Assert.Matches(@"top-1 \d+\.\d\d%\ntop-5 \d+\.\d\d%", stdout.Replace("\r", ""));
        using (var doc = JsonDocument.Parse(File.ReadAllText(json)))
        {
            var r = doc.RootElement;
            Assert.InRange(r.GetProperty("top1").GetDouble(), 0, 100);
            Assert.InRange(r.GetProperty("top5").GetDouble(), r.GetProperty("top1").GetDouble(), 100);
            Assert.Equal(10, r.GetProperty("per_class").GetArrayLength());
            var confusion = r.GetProperty("confusion");
            Assert.Equal(10, confusion.GetArrayLength());
            Assert.Equal(20, confusion.EnumerateArray().SelectMany(row => row.EnumerateArray()).Sum(v => v.GetInt64()));
            Assert.Equal("ankle-boot", r.GetProperty("classes")[0].GetString());
        }
        // Train and test are the same images with the same model and preprocessing: one cache entry serves both.
        Assert.Single(Directory.GetFiles(cache, "features-*.safetensors"));
        Assert.Contains("test features from the cache", stderr);

        // Second run: both feature sets come from the cache, and the result is the same.
        var first = File.ReadAllText(json);
        (code, _, stderr) = CliRunner.Run(args);
        Assert.True(code == 0, stderr);
        Assert.Contains("train features from the cache", stderr);
        Assert.Equal(first, File.ReadAllText(json));
    }

    [Fact]
    public void Multilabel_probe_reads_csvs_and_reports_mean_auroc()
    {
        var tmp = Fixture.TempDir();
        var lines = new List<string> { "path,labels" };
        foreach (var file in Directory.GetFiles(Samples(), "*.png", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            var cls = Path.GetFileName(Path.GetDirectoryName(file))!;
            var footwear = cls is "sandal" or "sneaker" or "ankle-boot";
            lines.Add($"{Path.GetRelativePath(tmp, file)},{(footwear ? "footwear|" : "")}{(cls.Contains('t') ? "has-t" : "")}");
        }
        var csv = Path.Combine(tmp, "labels.csv");
        File.WriteAllLines(csv, lines);
        var json = Path.Combine(tmp, "ml.json");
        var (code, stdout, stderr) = CliRunner.Run("probe", "--model", Model, "--train", csv, "--test", csv, "--multilabel",
            "--epochs", "2", "--warmup-epochs", "1", "--batch-size", "8", "--json", json);
        Assert.True(code == 0, stderr);
        Assert.Contains("mean AUROC", stdout);
        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        var r = doc.RootElement;
        Assert.InRange(r.GetProperty("mean_auroc").GetDouble(), 0, 100);
        Assert.Equal(["footwear", "has-t"], r.GetProperty("classes").EnumerateArray().Select(c => c.GetString()));
        Assert.Equal(2, r.GetProperty("per_class").GetArrayLength());
    }

    [Fact]
    public void Knn_reads_idx_files_with_a_limit()
    {
        var dir = Path.Combine(Fixture.TempDir(), "fashion-tiny");
        Directory.CreateDirectory(dir);
        var pixels = new byte[6 * 28 * 28];
        for (int i = 0; i < 6; i++) pixels.AsSpan(i * 784, 784).Fill((byte)(i * 40));
        foreach (var split in new[] { "train", "t10k" })
        {
            IdxFile.Write(Path.Combine(dir, $"{split}-images-idx3-ubyte.gz"), [6, 28, 28], pixels, gzip: true);
            IdxFile.Write(Path.Combine(dir, $"{split}-labels-idx1-ubyte.gz"), [6], [0, 1, 2, 3, 4, 5], gzip: true);
        }
        var (code, stdout, stderr) = CliRunner.Run("knn", "--model", Model, "--train", $"idx:{dir}:train", "--test", $"idx:{dir}:test",
            "--k", "1", "--limit", "3");
        Assert.True(code == 0, stderr);
        Assert.Contains("top-1 100.00%", stdout);
    }

    [Fact]
    public void Bad_data_arguments_get_one_line_errors_naming_the_file()
    {
        var dir = Fixture.TempDir();
        var (code, _, err) = CliRunner.Run("knn", "--model", Model, "--train", $"idx:{dir}:train", "--test", Samples());
        Assert.Equal(1, code);
        Assert.Contains(Path.Combine(dir, "train-images-idx3-ubyte"), err);
        Assert.Single(err.Trim().Split('\n'));

        File.WriteAllBytes(Path.Combine(dir, "train-images-idx3-ubyte"), [1, 2, 3, 4, 5, 6, 7, 8]);
        File.WriteAllBytes(Path.Combine(dir, "train-labels-idx1-ubyte"), [0, 0, 8, 1, 0, 0, 0, 0]);
        (code, _, err) = CliRunner.Run("probe", "--model", Model, "--train", $"idx:{dir}:train", "--test", Samples());
        Assert.Equal(1, code);
        Assert.Contains("bad magic", err);
        Assert.Contains(Path.Combine(dir, "train-images-idx3-ubyte"), err);
        Assert.Single(err.Trim().Split('\n'));

        (code, _, err) = CliRunner.Run("probe", "--model", Model, "--train", Samples(), "--test", Samples(), "--epochs", "0");
        Assert.Equal(1, code);
        Assert.Contains("--epochs 0", err);
    }
}
