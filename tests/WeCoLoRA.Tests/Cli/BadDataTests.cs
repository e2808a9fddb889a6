using WeCoLoRA.Checkpoints;
using WeCoLoRA.Data;
using WeCoLoRA.Distillation;

namespace WeCoLoRA.Tests.Cli;

/// <summary>Folders nobody curated: bad files are skipped with a warning each and a count, or stop the run with --strict.</summary>
[Collection(nameof(ConsoleCollection))]
public sealed class BadDataTests
{
    static readonly string[] BadFiles = ["zero.png", "truncated.png", "text.jpg", "huge_header.png"];
    static readonly string[] OddButGood = ["cmyk.jpg", "gray16.png", "png_named.jpg", "palette.png", "rgba.png"];

    static string MakeData(bool badInEveryClass = false)
    {
        var root = Fixture.TempDir();
        foreach (var cls in new[] { "a", "b" })
        {
            Directory.CreateDirectory(Path.Combine(root, cls));
            foreach (var f in OddButGood) File.Copy(Fixture.Path("images", "src", f), Path.Combine(root, cls, f));
        }
        foreach (var f in BadFiles) File.Copy(Fixture.Path("images", "src", f), Path.Combine(root, "a", "bad_" + f));
        if (badInEveryClass)
        {
            Directory.CreateDirectory(Path.Combine(root, "c"));
            File.Copy(Fixture.Path("images", "src", "zero.png"), Path.Combine(root, "c", "only.png"));
        }
        return root;
    }

    [Fact]
    public void Embed_skips_each_bad_file_with_one_warning_and_counts_them()
    {
        var data = MakeData();
        var outFile = Path.Combine(Fixture.TempDir(), "f.safetensors");
        var (code, _, err) = CliRunner.Run("embed", "--model", Fixture.Path("models", "timm_hub"), "--data", data, "--out", outFile, "--max-pixels", "1000000");
        Assert.True(code == 0, err);
        foreach (var f in BadFiles) Assert.Contains($"bad_{f}", err);
        Assert.Contains("4 of 14 images skipped", err);
        Assert.Equal(10, SafeTensors.Load(outFile)["features"].shape[0]);
    }

    [Fact]
    public void Knn_skips_bad_files_with_their_labels()
    {
        var data = MakeData();
        var (code, stdout, err) = CliRunner.Run("knn", "--model", Fixture.Path("models", "timm_hub"), "--train", data, "--test", data, "--k", "3");
        Assert.True(code == 0, err);
        Assert.Contains("4 of 14 images skipped", err);
        Assert.Contains("top-1", stdout);
    }

    [Fact]
    public void Strict_makes_the_first_bad_file_fatal()
    {
        var (code, _, err) = CliRunner.Run("embed", "--model", Fixture.Path("models", "timm_hub"), "--data", MakeData(), "--out",
            Path.Combine(Fixture.TempDir(), "f.safetensors"), "--strict");
        Assert.Equal(1, code);
        Assert.Contains("bad_huge_header.png", err); // first in ordinal order
        Assert.Single(err.Trim().Split('\n'));
    }

    [Fact]
    public void Distill_skips_bad_files_and_refuses_a_class_left_without_images()
    {
        var run = Path.Combine(Fixture.TempDir(), "run");
        var s = new DistillSettings { Teacher = Fixture.Path("models", "timm_hub"), Data = MakeData(), Out = run, Epochs = 1, BatchSize = 4, Rank = 4 };
        new Distiller(s).Run();
        Assert.Equal(10, File.ReadAllLines(Path.Combine(run, "subset.txt")).Length);

        var e = Assert.Throws<DistillationException>(() => new Distiller(s with { Data = MakeData(badInEveryClass: true), Out = Path.Combine(Fixture.TempDir(), "r") }).Run());
        Assert.Contains("class folder 'c'", e.Message);
        Assert.False(Directory.Exists(Path.Combine(Path.GetDirectoryName(s.Out)!, "r", "checkpoints")));
    }

    [Fact]
    public void A_folder_without_usable_images_is_an_error_before_any_work()
    {
        var root = Fixture.TempDir();
        foreach (var f in BadFiles) File.Copy(Fixture.Path("images", "src", f), Path.Combine(root, f));
        var e = Assert.Throws<DataException>(() => ImageScan.Check(ImageFolders.ListAll(root)));
        Assert.Contains("none of the 4 images", e.Message);
    }
}
