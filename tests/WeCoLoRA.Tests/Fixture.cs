using static TorchSharp.torch;

namespace WeCoLoRA.Tests;

static class Fixture
{
    public static string Path(params string[] parts) => System.IO.Path.Combine([AppContext.BaseDirectory, "Fixtures", .. parts]);

    public static string TempDir()
    {
        var dir = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "wecolora-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>Two class folders (x, y) of six copies each of the fixture images: a labelled dozen for training tests.</summary>
    public static string MakeTwoClassData()
    {
        var root = TempDir();
        var images = Directory.GetFiles(Path("models", "images"), "*.png", SearchOption.AllDirectories).Order().ToArray();
        foreach (var cls in new[] { "x", "y" })
        {
            Directory.CreateDirectory(System.IO.Path.Combine(root, cls));
            for (int i = 0; i < 6; i++) File.Copy(images[(i + cls.Length) % images.Length], System.IO.Path.Combine(root, cls, $"{i}.png"));
        }
        return root;
    }

    /// <summary>The lines of a run folder's metrics.jsonl.</summary>
    public static List<System.Text.Json.Nodes.JsonNode> Metrics(string run) =>
        File.ReadLines(System.IO.Path.Combine(run, "metrics.jsonl")).Select(l => System.Text.Json.Nodes.JsonNode.Parse(l)!).ToList();

    /// <summary>Max |a − b| over all elements, after checking that the shapes agree.</summary>
    public static double MaxAbsDiff(Tensor a, Tensor b)
    {
        Assert.Equal(b.shape, a.shape);
        using var d = (a.to(float32) - b.to(float32)).abs().max();
        return d.item<float>();
    }
}
