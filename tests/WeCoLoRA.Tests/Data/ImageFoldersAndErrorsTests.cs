using System.Diagnostics;
using WeCoLoRA.Data;
using Xunit;

namespace WeCoLoRA.Tests.Data;

public sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("wecolora-data-").FullName;
    public string File(string rel, byte[]? bytes = null)
    {
        var p = System.IO.Path.Combine(Path, rel);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(p)!);
        System.IO.File.WriteAllBytes(p, bytes ?? System.IO.File.ReadAllBytes(Fixtures.Src("rgb.png")));
        return p;
    }
    public void Dispose() => Directory.Delete(Path, recursive: true);
}

public class ImageFoldersTests
{
    [Fact]
    public void ListAllIsRecursiveOrdinalAndFiltersExtensions()
    {
        using var d = new TempDir();
        foreach (var f in new[] { "a.png", "B.png", "sub/z.JPG", "sub/deeper/x.webp", "Sub2/c.gif", "a b.bmp", "notes.txt", "sub/y.jpeg", "c.tiff" })
            d.File(f);
        var items = ImageFolders.ListAll(d.Path);
        Assert.Equal(new[] { "B.png", "Sub2/c.gif", "a b.bmp", "a.png", "sub/deeper/x.webp", "sub/y.jpeg", "sub/z.JPG" },
            items.Select(i => i.RelativePath));
        Assert.All(items, i => Assert.Equal(-1, i.Label));
        Assert.All(items, i => Assert.True(File.Exists(i.Path)));
    }

    [Fact]
    public void ListClassesFollowsTorchvisionImageFolder()
    {
        using var d = new TempDir();
        foreach (var f in new[] { "dog/b.png", "dog/a/z.png", "dog/A.png", "Cat/x.png", "cat/y.png", "cat/nested/n.png", "cat/m.png", "readme.png" })
            d.File(f);
        var (items, classes) = ImageFolders.ListClasses(d.Path);
        Assert.Equal(new[] { "Cat", "cat", "dog" }, classes);
        // torchvision: sorted(os.walk(class_dir)) — a folder's own files before its sub-folders' files.
        Assert.Equal(new[] { "Cat/x.png", "cat/m.png", "cat/y.png", "cat/nested/n.png", "dog/A.png", "dog/b.png", "dog/a/z.png" },
            items.Select(i => i.RelativePath));
        Assert.Equal(new[] { 0, 1, 1, 1, 2, 2, 2 }, items.Select(i => i.Label));
    }

    [Fact]
    public void MissingOrEmptyFoldersAreOneLineErrors()
    {
        using var d = new TempDir();
        var missing = Path.Combine(d.Path, "nope");
        Assert.Contains(missing, Assert.Throws<DataException>(() => ImageFolders.ListAll(missing)).Message);
        d.File("empty/readme.txt", "hi"u8.ToArray());
        Assert.Contains(d.Path, Assert.Throws<DataException>(() => ImageFolders.ListAll(d.Path)).Message);
        Assert.Contains("empty", Assert.Throws<DataException>(() => ImageFolders.ListClasses(d.Path)).Message);
    }
}

public class BadImageTests(Xunit.Abstractions.ITestOutputHelper output)
{
    [Theory]
    [InlineData("zero.png", "empty")]
    [InlineData("truncated.png", "truncated")]
    [InlineData("text.jpg", "not a recognised image")]
    public void BadFilesThrowNamingThePath(string file, string why)
    {
        var path = Fixtures.Src(file);
        var e = Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode(path));
        Assert.Contains(path, e.Message);
        Assert.Contains(why, e.Message);
        Assert.DoesNotContain("\n", e.Message);
        output.WriteLine(e.Message);
    }

    [Fact]
    public void MissingFileThrowsDecodeException()
    {
        var path = Fixtures.Src("does-not-exist.png");
        Assert.Contains(path, Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode(path)).Message);
    }

    [Fact]
    public void HugeHeaderIsRefusedBeforeAllocating()
    {
        var path = Fixtures.Src("huge_header.png");
        long before = GC.GetAllocatedBytesForCurrentThread();
        var sw = Stopwatch.StartNew();
        var e = Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode(path));
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Contains("100000x100000", e.Message);
        Assert.Contains(path, e.Message);
        Assert.True(allocated < 1_000_000, $"allocated {allocated} bytes");
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(2));
        // A lower custom limit applies to ordinary images too.
        Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode(Fixtures.Src("rgb.png"), maxPixels: 37 * 23 - 1));
        Assert.Equal(37, ImageDecoder.Decode(Fixtures.Src("rgb.png"), maxPixels: 37 * 23).Width);
    }

    [Fact]
    public void TruncatedVariantsNeverCrashOrHang()
    {
        foreach (var src in new[] { "rgb.png", "rgb.jpg", "rgb.bmp", "anim.gif", "lossless.webp", "gray16.png", "cmyk.jpg" })
        {
            var bytes = File.ReadAllBytes(Fixtures.Src(src));
            foreach (var len in new[] { 1, 8, 30, bytes.Length / 3, bytes.Length - 20 })
            {
                try
                {
                    ImageDecoder.Decode(bytes.AsSpan(0, len), $"{src}[..{len}]");
                }
                catch (ImageDecodeException e)
                {
                    Assert.Contains($"{src}[..{len}]", e.Message);
                }
            }
        }
    }
}
