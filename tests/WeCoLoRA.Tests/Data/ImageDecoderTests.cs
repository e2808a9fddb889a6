using WeCoLoRA.Data;
using Xunit;
using Xunit.Abstractions;

namespace WeCoLoRA.Tests.Data;

public class ImageDecoderTests(ITestOutputHelper output)
{
    public static TheoryData<string> LosslessFiles => new()
    {
        "rgb.png", "rgba.png", "palette.png", "gray.png", "gray_alpha.png", "gray16.png", "rgb16.png",
        "rgb.bmp", "anim.gif", "lossless.webp", "lossless_rgba.webp", "png_named.jpg", "big.png",
    };

    [Theory]
    [MemberData(nameof(LosslessFiles))]
    public void LosslessDecodeMatchesPilExactly(string file)
    {
        var img = ImageDecoder.Decode(Fixtures.Src(file));
        var m = Fixtures.Manifest.GetProperty("decode").GetProperty(file);
        Assert.Equal(m.GetProperty("w").GetInt32(), img.Width);
        Assert.Equal(m.GetProperty("h").GetInt32(), img.Height);
        var (max, count) = Fixtures.Diff(img.Pixels, Fixtures.Golden(file + ".rgb"));
        output.WriteLine($"{file}: max |diff| {max}, {count} of {img.Pixels.Length} samples differ");
        Assert.Equal(0, max);
    }

    [Theory]
    [InlineData("rgb.jpg", 2)]
    [InlineData("gray.jpg", 0)]
    [InlineData("cmyk.jpg", 2)]
    public void JpegDecodeIsCloseToPil(string file, int tolerance)
    {
        var img = ImageDecoder.Decode(Fixtures.Src(file));
        var (max, count) = Fixtures.Diff(img.Pixels, Fixtures.Golden(file + ".rgb"));
        output.WriteLine($"{file}: max |diff| {max}, {count} of {img.Pixels.Length} samples differ");
        Assert.True(max <= tolerance, $"{file}: max |diff| {max} > {tolerance}");
    }
}
