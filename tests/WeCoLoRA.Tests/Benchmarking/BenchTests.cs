using System.Text.Json.Nodes;
using WeCoLoRA.Benchmarking;
using WeCoLoRA.Lora;
using WeCoLoRA.Models;
using WeCoLoRA.Tests.Cli;

namespace WeCoLoRA.Tests.Benchmarking;

public sealed class FlopCounterTests
{
    // 8×8 images, 4×4 patches: 4 patches + class token = 5 tokens; dim 4, mlp 16, 3 channels, batch 1.
    static readonly VitConfig Tiny = new() { ImgSize = 8, PatchSize = 4, EmbedDim = 4, Depth = 2, NumHeads = 2, NumClasses = 0 };
    static readonly LoraSpec Rank1 = new(LoraSpec.AllTargets, 1, 1);

    [Fact]
    public void Teacher_and_student_forward_are_counted_by_hand()
    {
        // patch conv 2·4·(3·16)·4 = 1536; block: qkv 2·5·4·12 = 480, proj 160, fc1 640, fc2 640, attention QKᵀ + PV 2·2·5·5·4 = 400.
        // adapters (rank 1): qkv 2·5·4·3 + 2·5·1·12 = 240, proj 2·5·(4 + 4) = 80, fc1 2·5·(4 + 16) = 200, fc2 200.
        var f = FlopCounter.Count(Tiny, studentDepth: 1, Rank1, batch: 1);
        Assert.Equal(1536 + 2 * 2320, f.TeacherForward);
        Assert.Equal(1536 + 2320 + 720, f.StudentForward);
    }

    [Fact]
    public void Backward_counts_input_grads_of_frozen_linears_and_both_grads_of_adapters()
    {
        // Block 0 (input needs no grad): qkv base 0; qkv A weight grad 120, B weight + input grads 2·120; attention 2·400;
        // proj 160 + adapter 2·40 + 2·40; fc1 640 + 2·2·5·16 + 2·2·5·4; fc2 640 + 2·2·5·4 + 2·2·5·16  = 3560.
        Assert.Equal(3560, FlopCounter.Count(Tiny, 1, Rank1, 1).StudentBackward);
        // Block 1 adds its qkv input gradient (480) and the stacked A's input gradient (120).
        Assert.Equal(3560 + 3560 + 600, FlopCounter.Count(Tiny, 2, Rank1, 1).StudentBackward);
    }

    [Fact]
    public void Full_training_backward_is_twice_the_forward()
    {
        var f = FlopCounter.Count(Tiny, 1, null, 1);
        Assert.Equal(1536 + 2320, f.StudentForward);
        Assert.Equal(2 * (1536 + 2320), f.StudentBackward);
    }

    [Fact]
    public void Flops_scale_with_the_batch()
    {
        var one = FlopCounter.Count(Tiny, 1, Rank1, 1);
        var four = FlopCounter.Count(Tiny, 1, Rank1, 4);
        Assert.Equal(4 * one.Total, four.Total);
    }
}

[Collection(nameof(ConsoleCollection))]
public sealed class BenchCliTests
{
    [Fact]
    public void Json_output_has_the_peer_keys_and_ours()
    {
        var (code, stdout, stderr) = CliRunner.Run("bench", "--model", "vit_tiny_patch16_224", "--batch", "2", "--lanes", "2", "--steps", "1", "--warmup", "0",
            "--peak-size", "128", "--json");
        Assert.True(code == 0, stderr);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines); // one JSON object on one line, as the peer prints
        var j = JsonNode.Parse(lines[0])!.AsObject();
        Assert.Equal("vit_tiny_patch16_224", j["model"]!.GetValue<string>());
        Assert.Equal("fp32", j["precision"]!.GetValue<string>());
        Assert.Equal(2, j["batch"]!.GetValue<int>());
        Assert.Equal(2, j["lanes"]!.GetValue<int>());
        Assert.Equal(6, j["student_depth"]!.GetValue<int>());
        Assert.True(j["img_per_s"]!.GetValue<double>() > 0);
        Assert.True(j["step_ms"]!.GetValue<double>() > 0);
        foreach (var phase in new[] { "data", "teacher_forward", "student_forward", "backward", "optimizer" })
        {
            Assert.NotNull(j["phase_ms"]![phase]);
            Assert.NotNull(j["phase_share"]![phase]);
        }
        var expected = FlopCounter.Count(VitPresets.Get("vit_tiny_patch16_224"), 6, new LoraSpec(LoraSpec.AllTargets, 64, 64), 2);
        Assert.Equal(Math.Round(expected.Total / 1e9, 2), j["gflop_per_step"]!["total"]!.GetValue<double>());
        Assert.True(j["peak_gflop_per_s"]!["fp32"]!.GetValue<double>() > 0);
        Assert.True(j["peak_gflop_per_s"]!["bf16"]!.GetValue<double>() > 0);
        Assert.True(j["mfu"]!.GetValue<double>() > 0);
        Assert.True(j["peak_rss_mb"]!.GetValue<double>() > 0);
        Assert.True(j["page_faults_per_step"]!.GetValue<double>() >= 0);
        Assert.Single(j["rss_mb_curve"]!.AsArray());
        Assert.Single(j["step_ms_all"]!.AsArray());
        Assert.True(double.IsFinite(j["loss"]!.GetValue<double>()));
    }

    [Fact]
    public void Several_models_need_vs_reference()
    {
        var (code, _, stderr) = CliRunner.Run("bench", "--model", "vit_tiny_patch16_224,vit_small_patch16_224", "--steps", "1");
        Assert.Equal(1, code);
        Assert.Contains("--vs-reference", stderr);
    }
}
