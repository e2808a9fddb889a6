using System.Text.Json;
using WeCoLoRA.Checkpoints;

namespace WeCoLoRA.Tests.Cli;

[Collection(nameof(ConsoleCollection))]
public sealed class InspectEmbedCliTests
{
    [Fact]
    public void Inspect_json_reports_the_architecture()
    {
        var (code, stdout, stderr) = CliRunner.Run("inspect", Fixture.Path("models", "hf_vit"), "--json");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        var r = doc.RootElement;
        Assert.Equal(32, r.GetProperty("img_size").GetInt32());
        Assert.Equal(8, r.GetProperty("patch_size").GetInt32());
        Assert.Equal(48, r.GetProperty("embed_dim").GetInt32());
        Assert.Equal(3, r.GetProperty("depth").GetInt32());
        Assert.Equal(3, r.GetProperty("num_heads").GetInt32());
        Assert.Equal(5, r.GetProperty("num_classes").GetInt32());
        // conv 3*8*8*48+48, tokens 17*48+48, 3 blocks of (2 LN + qkv + proj + fc1 + fc2), final LN, head 48*5+5
        long block = 2 * 96 + (48 * 144 + 144) + (48 * 48 + 48) + (48 * 192 + 192) + (192 * 48 + 48);
        Assert.Equal(3 * 64 * 48 + 48 + 17 * 48 + 48 + 3 * block + 96 + 48 * 5 + 5, r.GetProperty("params").GetInt64());
    }

    [Theory]
    [InlineData("cls", "timm.cls")]
    [InlineData("tokens", "timm.tokens")]
    [InlineData("avg", "timm.avg")]
    public void Embed_writes_pytorchs_features_with_the_paths(string pool, string golden)
    {
        var outFile = Path.Combine(Fixture.TempDir(), "f.safetensors");
        var (code, _, stderr) = CliRunner.Run("embed", "--model", Fixture.Path("models", "timm_hub"), "--data", Fixture.Path("models", "images"),
            "--out", outFile, "--pool", pool, "--batch-size", "3");
        Assert.True(code == 0, stderr);
        var tensors = SafeTensors.Load(outFile, out var metadata);
        var expected = SafeTensors.Load(Fixture.Path("models", "golden.safetensors"))[golden];
        Assert.True(Fixture.MaxAbsDiff(tensors["features"], expected) <= 1e-4);
        Assert.Equal(["B.png", "a.png", "sub/c.png", "sub/d_gray.png"], JsonSerializer.Deserialize<string[]>(metadata["paths"])!);
    }

    [Fact]
    public void Bad_inputs_get_one_line_errors_naming_the_value()
    {
        var (code, _, err) = CliRunner.Run("embed", "--model", "/no/such/model.pth", "--data", Fixture.Path("models", "images"), "--out", "/tmp/x.safetensors");
        Assert.Equal(1, code);
        Assert.Contains("/no/such/model.pth", err);
        Assert.Single(err.Trim().Split('\n'));

        (code, _, err) = CliRunner.Run("embed", "--model", Fixture.Path("models", "timm_hub"), "--data", "/no/such/dir", "--out", "/tmp/x.safetensors");
        Assert.Equal(1, code);
        Assert.Contains("/no/such/dir", err);

        (code, _, err) = CliRunner.Run("inspect", Fixture.Path("models", "timm_hub"), "--img-size", "30");
        Assert.Equal(1, code);
        Assert.Contains("img_size 30", err);
    }
}
