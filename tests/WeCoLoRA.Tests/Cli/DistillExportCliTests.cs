using System.Text.Json.Nodes;
using WeCoLoRA.Checkpoints;

namespace WeCoLoRA.Tests.Cli;

[Collection(nameof(ConsoleCollection))]
public sealed class DistillExportCliTests
{
    [Fact]
    public void Distill_then_export_with_and_without_merge()
    {
        var run = Path.Combine(Fixture.TempDir(), "run");
        var (code, _, err) = CliRunner.Run("distill", "--teacher", Fixture.Path("models", "timm_hub"), "--data", Fixture.Path("models", "images"),
            "--out", run, "--epochs", "1", "--batch-size", "2", "--rank", "4", "--seed", "3");
        Assert.True(code == 0, err);
        Assert.Contains("step 2/2", err); // plain progress lines when stderr is not a terminal
        Assert.Contains("student written", err);

        var kept = Path.Combine(Fixture.TempDir(), "kept");
        (code, _, err) = CliRunner.Run("export", "--model", run, "--out", kept, "--no-merge");
        Assert.True(code == 0, err);
        var adapters = SafeTensors.Load(Path.Combine(kept, "adapter_model.safetensors"));
        Assert.Contains("blocks.0.attn.qkv.lora_A.q.weight", adapters.Keys);
        Assert.Contains("blocks.1.mlp.fc1.lora_B.weight", adapters.Keys);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(kept, "adapter_config.json")))!;
        Assert.Equal(4, config["r"]!.GetValue<int>());
        Assert.DoesNotContain(SafeTensors.Load(Path.Combine(kept, "model.safetensors")).Keys, k => k.Contains("lora_") || k.Contains("base_layer"));

        var merged = Path.Combine(Fixture.TempDir(), "merged");
        (code, _, err) = CliRunner.Run("export", "--model", kept, "--out", merged);
        Assert.True(code == 0, err);
        Assert.False(File.Exists(Path.Combine(merged, "adapter_model.safetensors")));

        var onnx = Path.Combine(Fixture.TempDir(), "onnx");
        (code, _, err) = CliRunner.Run("export", "--model", run, "--out", onnx, "--format", "onnx");
        Assert.True(code == 0, err);
        using (var session = WeCoLoRA.Export.OnnxInference.Open(Path.Combine(onnx, "model.onnx")))
            Assert.Equal(5, session.NumClasses);
        (code, _, err) = CliRunner.Run("export", "--model", run, "--out", onnx, "--format", "onnx", "--no-merge");
        Assert.Equal(1, code);
        Assert.Contains("--no-merge", err);

        string stdout;
        (code, stdout, _) = CliRunner.Run("inspect", kept);
        Assert.Contains("LoRA rank 4", stdout);
        (code, stdout, _) = CliRunner.Run("inspect", merged, "--json");
        Assert.Equal(2, JsonNode.Parse(stdout)!["depth"]!.GetValue<int>());
    }

    [Fact]
    public void Bad_distill_arguments_name_the_value()
    {
        var data = Fixture.Path("models", "images");
        foreach (var (args, expected) in new (string[], string)[]
        {
            (["--r", "7"], "--r 7"),
            (["--ratio", "0"], "--ratio 0"),
            (["--method", "lora"], "--method 'lora'"),
            (["--rank", "0"], "--rank 0"),
            (["--rank", "100"], "rank 100"),
            (["--keep", "2,1"], "--keep"),
            (["--lanes", "-1"], "--lanes -1"),
        })
        {
            var (code, _, err) = CliRunner.Run(["distill", "--teacher", Fixture.Path("models", "timm_hub"), "--data", data, "--out", Path.Combine(Fixture.TempDir(), "r"), .. args]);
            Assert.Equal(1, code);
            Assert.Contains(expected, err);
            Assert.Single(err.Trim().Split('\n'));
        }
    }
}
