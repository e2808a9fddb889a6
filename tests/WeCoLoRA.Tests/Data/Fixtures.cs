using System.Text.Json;
using WeCoLoRA.Data;

namespace WeCoLoRA.Tests.Data;

/// <summary>Access to the images and PIL golden outputs made by Fixtures/images/make_fixtures.py.</summary>
internal static class Fixtures
{
    public static readonly string Root = Path.Combine(AppContext.BaseDirectory, "Fixtures", "images");
    public static string Src(string name) => Path.Combine(Root, "src", name);
    public static byte[] Golden(string name) => File.ReadAllBytes(Path.Combine(Root, "golden", name));

    public static float[] GoldenFloats(string name)
    {
        var bytes = Golden(name);
        var f = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, f, 0, bytes.Length);
        return f;
    }

    private static readonly Lazy<JsonElement> ManifestLazy = new(() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(Root, "manifest.json"))).RootElement);
    public static JsonElement Manifest => ManifestLazy.Value;

    public static RgbImage GoldenImage(string name, int width, int height) => new(width, height, Golden(name));

    public static (int Max, int Count) Diff(byte[] a, byte[] b)
    {
        if (a.Length != b.Length) throw new InvalidOperationException($"length {a.Length} != {b.Length}");
        int max = 0, count = 0;
        for (int i = 0; i < a.Length; i++)
        {
            int d = Math.Abs(a[i] - b[i]);
            if (d > 0) count++;
            max = Math.Max(max, d);
        }
        return (max, count);
    }
}
