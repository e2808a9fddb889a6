using WeCoLoRA.Data;
using Xunit;
using Xunit.Abstractions;

namespace WeCoLoRA.Tests.Data;

public class TransformsTests(ITestOutputHelper output)
{
    public static TheoryData<string> ResizeKeys()
    {
        var d = new TheoryData<string>();
        foreach (var p in Fixtures.Manifest.GetProperty("resize").EnumerateObject()) d.Add(p.Name);
        return d;
    }

    [Theory]
    [MemberData(nameof(ResizeKeys))]
    public void ResizeMatchesPil(string key)
    {
        var m = Fixtures.Manifest.GetProperty("resize").GetProperty(key);
        var src = ImageDecoder.Decode(Fixtures.Src(m.GetProperty("src").GetString()!));
        var interp = m.GetProperty("filter").GetString() switch
        {
            "bicubic" => Interpolation.Bicubic,
            "bilinear" => Interpolation.Bilinear,
            _ => Interpolation.Nearest,
        };
        int w = m.GetProperty("w").GetInt32(), h = m.GetProperty("h").GetInt32();
        var outImg = Transforms.Resize(src, w, h, interp);
        var (max, count) = Fixtures.Diff(outImg.Pixels, Fixtures.Golden(key + ".rgb"));
        output.WriteLine($"{key}: max |diff| {max}, {count} samples differ");
        Assert.True(max <= 1, $"{key}: max |diff| {max}");
        Assert.Equal(0, max); // measured: exact
    }

    public static TheoryData<string> EvalKeys()
    {
        var d = new TheoryData<string>();
        foreach (var p in Fixtures.Manifest.GetProperty("eval").EnumerateObject()) d.Add(p.Name);
        return d;
    }

    [Theory]
    [MemberData(nameof(EvalKeys))]
    public void EvalPipelineMatchesTorchvision(string key)
    {
        var m = Fixtures.Manifest.GetProperty("eval").GetProperty(key);
        var src = ImageDecoder.Decode(Fixtures.Src(m.GetProperty("src").GetString()!));
        float[] mean = m.GetProperty("mean").EnumerateArray().Select(e => (float)e.GetDouble()).ToArray();
        float[] std = m.GetProperty("std").EnumerateArray().Select(e => (float)e.GetDouble()).ToArray();
        var pre = new Preprocess(m.GetProperty("img_size").GetInt32(), m.GetProperty("crop_pct").GetDouble(), mean, std,
            m.GetProperty("filter").GetString() == "bilinear" ? Interpolation.Bilinear : Interpolation.Bicubic);
        var img = pre.Eval(src);
        Assert.Equal(pre.ImgSize, img.Width);
        Assert.Equal(pre.ImgSize, img.Height);
        var (max, _) = Fixtures.Diff(img.Pixels, Fixtures.Golden(key + ".rgb"));
        var floats = new float[pre.SampleLength];
        pre.Normalize(img, floats);
        var expected = Fixtures.GoldenFloats(key + ".f32");
        float maxF = 0;
        for (int i = 0; i < floats.Length; i++) maxF = Math.Max(maxF, Math.Abs(floats[i] - expected[i]));
        output.WriteLine($"{key}: uint8 max |diff| {max}, float max |diff| {maxF:G3}");
        Assert.Equal(0, max);
        Assert.True(maxF <= 1e-6f, $"float max diff {maxF}");
    }

    [Fact]
    public void EvalLeavesImageOfExactSizeUntouched()
    {
        var src = ImageDecoder.Decode(Fixtures.Src("big.png")); // 64 x 48
        var cropped = Transforms.Crop(src, 0, 0, 40, 40);
        var pre = Preprocess.ImageNet(40, 1.0);
        Assert.Equal(40, pre.ScaleSize);
        Assert.Equal(cropped.Pixels, pre.Eval(cropped).Pixels);
        Assert.Equal(256, Preprocess.ImageNet(224, 0.875).ScaleSize);
        Assert.Equal(248, Preprocess.ImageNet(224, 0.9).ScaleSize);
    }

    [Fact]
    public void CenterCropMatchesTorchvision()
    {
        foreach (var c in Fixtures.Manifest.GetProperty("center_crop").EnumerateArray())
        {
            int h = c.GetProperty("h").GetInt32(), w = c.GetProperty("w").GetInt32(), s = c.GetProperty("size").GetInt32();
            var px = new byte[h * w * 3];
            for (int i = 0; i < h * w; i++) px[3 * i] = px[3 * i + 1] = px[3 * i + 2] = (byte)(i % 250 + 1);
            var outImg = Transforms.CenterCrop(new RgbImage(w, h, px), s);
            var expected = c.GetProperty("out").EnumerateArray().Select(e => (byte)e.GetInt32()).ToArray();
            var actual = Enumerable.Range(0, s * s).Select(i => outImg.Pixels[3 * i]).ToArray();
            Assert.True(expected.SequenceEqual(actual), $"CenterCrop({s}) of {h}x{w}");
        }
        Assert.Equal((4, 10), Transforms.CenterCropOffsets(23, 37, 16)); // round(3.5) = 4, round(10.5) = 10 (half to even)
    }

    [Fact]
    public void ShorterSideSizeFollowsTorchvision()
    {
        Assert.Equal((341, 256), Transforms.ShorterSideSize(500, 375, 256)); // int(256 * 500 / 375) = 341
        Assert.Equal((256, 384), Transforms.ShorterSideSize(200, 300, 256));
        Assert.Equal((18, 18), Transforms.ShorterSideSize(5, 5, 18));
    }

    [Fact]
    public void RandomResizedCropParamsStayInsideAndAreDeterministic()
    {
        var shapes = new[] { (23, 37), (500, 375), (10, 400), (400, 10), (1, 1), (224, 224) };
        foreach (var (h, w) in shapes)
        {
            for (int seed = 0; seed < 200; seed++)
            {
                var p = Transforms.RandomResizedCropParams(h, w, (0.2, 1.0), (3.0 / 4, 4.0 / 3), new Random(seed));
                Assert.True(p.Height >= 1 && p.Width >= 1 && p.Top >= 0 && p.Left >= 0
                    && p.Top + p.Height <= h && p.Left + p.Width <= w, $"{h}x{w} seed {seed}: {p}");
                Assert.Equal(p, Transforms.RandomResizedCropParams(h, w, (0.2, 1.0), (3.0 / 4, 4.0 / 3), new Random(seed)));
            }
        }
        // Extreme aspect ratios fall back to torchvision's central crop.
        Assert.Equal((0, 193, 10, 13), Transforms.RandomResizedCropParams(10, 400, (0.9, 1.0), (3.0 / 4, 4.0 / 3), new Random(1)));
        Assert.Equal((0, 0, 5, 8), Transforms.RandomResizedCropParams(5, 8, (2.0, 3.0), (1.0, 2.0), new Random(1))); // 1.6 within ratio: whole image
    }

    [Fact]
    public void TrainIsDeterministicPerSampleSeed()
    {
        var src = ImageDecoder.Decode(Fixtures.Src("big.png"));
        var pre = Preprocess.ImageNet(24);
        var a = pre.Train(src, BatchLoader.SampleRandom(7, 2, 5));
        var b = pre.Train(src, BatchLoader.SampleRandom(7, 2, 5));
        var c = pre.Train(src, BatchLoader.SampleRandom(7, 3, 5));
        Assert.Equal((24, 24), (a.Width, a.Height));
        Assert.Equal(a.Pixels, b.Pixels);
        Assert.NotEqual(a.Pixels, c.Pixels);
    }

    [Fact]
    public void FlipAndCropAreExact()
    {
        var img = new RgbImage(3, 2, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]);
        Assert.Equal(new byte[] { 7, 8, 9, 4, 5, 6, 1, 2, 3, 16, 17, 18, 13, 14, 15, 10, 11, 12 }, Transforms.HorizontalFlip(img).Pixels);
        Assert.Equal(new byte[] { 13, 14, 15, 16, 17, 18 }, Transforms.Crop(img, 1, 1, 1, 2).Pixels);
        Assert.Equal(new byte[] { 0, 0, 0, 1, 2, 3 }, Transforms.Crop(img, 0, -1, 1, 2).Pixels); // PIL pads with black
    }

    [Fact]
    public void ToNormalizedChwMatchesTorchFormula()
    {
        var img = new RgbImage(2, 1, [0, 128, 255, 10, 20, 30]);
        float[] mean = [0.485f, 0.456f, 0.406f], std = [0.229f, 0.224f, 0.225f];
        var dst = new float[6];
        Transforms.ToNormalizedChw(img, mean, std, dst);
        float[] expected =
        [
            (0f / 255f - mean[0]) / std[0], (10f / 255f - mean[0]) / std[0],
            (128f / 255f - mean[1]) / std[1], (20f / 255f - mean[1]) / std[1],
            (255f / 255f - mean[2]) / std[2], (30f / 255f - mean[2]) / std[2],
        ];
        Assert.Equal(expected, dst);
        Assert.Equal(-2.117904f, dst[0], 5);
        Assert.Throws<ArgumentException>(() => Transforms.ToNormalizedChw(img, mean, std, new float[5]));
    }
}
