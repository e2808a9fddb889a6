using System.Text.Json.Nodes;
using WeCoLoRA.Checkpoints;
using WeCoLoRA.Data;
using WeCoLoRA.Distillation;
using WeCoLoRA.Evaluation;
using static TorchSharp.torch;

namespace WeCoLoRA.Tests.Distillation;

/// <summary>End-to-end runs on the tiny 32-px teacher (depth 3) and a dozen images; each takes a second or two.</summary>
public sealed class DistillerTests
{
    static readonly string Teacher = Fixture.Path("models", "timm_hub");

    static DistillSettings Settings(string data, string outDir) => new()
    {
        Teacher = Teacher, Data = data, Out = outDir, Epochs = 3, WarmupEpochs = 1, BatchSize = 4, Rank = 4, Lr = 5e-3, Workers = 2,
    };

    [Fact]
    public void Zero_epochs_export_the_kept_teacher_blocks_bit_for_bit()
    {
        var run = Path.Combine(Fixture.TempDir(), "run");
        new Distiller(Settings(Fixture.MakeTwoClassData(), run) with { Epochs = 0 }).Run();
        var export = Path.Combine(Fixture.TempDir(), "export");
        ModelExport.ToFolder(ModelLoader.Load(run), export, merge: true);
        var student = SafeTensors.Load(Path.Combine(export, "model.safetensors"));
        var teacher = SafeTensors.Load(Path.Combine(Teacher, "model.safetensors"));
        Assert.Equal(teacher.Count - 12, student.Count); // one block (12 tensors) fewer: kept 0 and 2 of 3
        foreach (var (key, value) in student)
        {
            var source = key.StartsWith("blocks.1.") ? "blocks.2." + key[9..] : key;
            Assert.True(value.allclose(teacher[source], rtol: 0, atol: 0), key);
        }
        Assert.Equal(2, ModelLoader.Load(export).Config.Depth);
    }

    [Fact]
    public void Resume_after_a_kill_mid_epoch_reproduces_the_uninterrupted_losses_exactly()
    {
        var data = Fixture.MakeTwoClassData();
        var full = Path.Combine(Fixture.TempDir(), "full");
        new Distiller(Settings(data, full)).Run();

        var killed = Path.Combine(Fixture.TempDir(), "killed");
        Assert.Throws<OperationCanceledException>(() => new Distiller(Settings(data, killed), StepObserver.KillAfter(5)).Run());
        Assert.Equal(5, Fixture.Metrics(killed).Count); // 3 steps per epoch: killed in epoch 2, after logging step 5
        new Distiller(Settings(data, killed)).Run(resume: true);

        var expected = Fixture.Metrics(full).Select(m => (m["step"]!.GetValue<long>(), m["loss"]!.GetValue<double>(), m["lr"]!.GetValue<double>())).ToList();
        var actual = Fixture.Metrics(killed).Select(m => (m["step"]!.GetValue<long>(), m["loss"]!.GetValue<double>(), m["lr"]!.GetValue<double>())).ToList();
        Assert.Equal(9, expected.Count);
        Assert.Equal(expected, actual);
        var a = SafeTensors.Load(Path.Combine(full, "student", "adapter_model.safetensors"));
        var b = SafeTensors.Load(Path.Combine(killed, "student", "adapter_model.safetensors"));
        foreach (var (k, v) in a) Assert.True(v.allclose(b[k], rtol: 0, atol: 0), k);
    }

    [Fact]
    public void The_run_folder_records_settings_subset_metrics_and_the_last_two_checkpoints()
    {
        var run = Path.Combine(Fixture.TempDir(), "run");
        new Distiller(Settings(Fixture.MakeTwoClassData(), run) with { Ratio = 0.5, Lanes = 3 }).Run();
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(run, "config.json")))!;
        Assert.Equal(3, config["lanes"]!.GetValue<int>());
        Assert.Equal("wecolora", config["settings"]!["method"]!.GetValue<string>());
        Assert.Equal(new[] { 0, 2 }, config["kept_blocks"]!.AsArray().Select(n => n!.GetValue<int>()));
        Assert.Equal(6, File.ReadAllLines(Path.Combine(run, "subset.txt")).Length);
        Assert.Equal(["step-00000004", "step-00000006"], Directory.GetDirectories(Path.Combine(run, "checkpoints")).Select(Path.GetFileName).Order());
        var m = Fixture.Metrics(run);
        Assert.Equal(6, m.Count); // 6 images, batch 4: 2 steps per epoch
        Assert.All(m, line => Assert.NotNull(line["images_per_s"]));
        Assert.True(m[0]["lr"]!.GetValue<double>() == 0); // warm-up starts at 0
    }

    [Fact]
    public void Training_lowers_the_loss_and_the_merged_export_embeds_like_the_unmerged_student()
    {
        var data = Fixture.MakeTwoClassData();
        var run = Path.Combine(Fixture.TempDir(), "run");
        new Distiller(Settings(data, run) with { Epochs = 6, NoAugment = true, Lr = 2e-2 }).Run();
        var losses = Fixture.Metrics(run).Select(m => m["loss"]!.GetValue<double>()).ToList();
        Assert.True(losses[^1] < 0.8 * losses[0], $"loss {losses[0]} -> {losses[^1]}");

        var items = ImageFolders.ListAll(data);
        var unmerged = ModelLoader.Load(run);
        Assert.NotNull(unmerged.Adapters);
        using var a = FeatureExtractor.Extract(unmerged.Model, items, ModelPreprocess.For(unmerged.Config), FeatureKind.Tokens);
        var export = Path.Combine(Fixture.TempDir(), "export");
        ModelExport.ToFolder(ModelLoader.Load(run), export, merge: true);
        Assert.False(File.Exists(Path.Combine(export, "adapter_model.safetensors")));
        var merged = ModelLoader.Load(export);
        Assert.Null(merged.Adapters);
        using var b = FeatureExtractor.Extract(merged.Model, items, ModelPreprocess.For(merged.Config), FeatureKind.Tokens);
        Assert.True(Fixture.MaxAbsDiff(a, b) <= 1e-5);
    }

    [Theory]
    [InlineData(DistillMethod.WecoKd)]
    [InlineData(DistillMethod.KdScratch)]
    [InlineData(DistillMethod.LoraQv)]
    public void Baselines_train_the_parameters_they_should(DistillMethod method)
    {
        var run = Path.Combine(Fixture.TempDir(), "run");
        var s = Settings(Fixture.MakeTwoClassData(), run) with { Method = method, Epochs = 1 };
        new Distiller(s).Run();
        var trainable = SafeTensors.Load(Path.Combine(run, "checkpoints", "step-00000003", "trainable.safetensors")).Keys.ToList();
        if (method == DistillMethod.LoraQv)
        {
            Assert.All(trainable, k => Assert.Matches(@"attn\.qkv\.lora_[AB]\.[qv]\.weight$", k));
            Assert.Equal(8, trainable.Count);
        }
        else
        {
            Assert.Contains("pos_embed", trainable);
            Assert.Contains("blocks.1.mlp.fc2.weight", trainable);
            Assert.False(File.Exists(Path.Combine(run, "student", "adapter_model.safetensors")));
        }
    }

    [Fact]
    public void Bf16_runs_keep_fp32_adapters_and_save_fp32_base_weights()
    {
        var data = Fixture.MakeTwoClassData();
        var run = Path.Combine(Fixture.TempDir(), "run");
        new Distiller(Settings(data, run) with { Precision = Precision.Bf16, Epochs = 1 }).Run();
        var student = SafeTensors.Load(Path.Combine(run, "student", "model.safetensors"));
        var teacher = SafeTensors.Load(Path.Combine(Teacher, "model.safetensors"));
        Assert.True(student["blocks.0.attn.qkv.weight"].allclose(teacher["blocks.0.attn.qkv.weight"], rtol: 0, atol: 0));
        Assert.All(SafeTensors.Load(Path.Combine(run, "student", "adapter_model.safetensors")).Values, t => Assert.Equal(ScalarType.Float32, t.dtype));
        // The bf16 loss is the fp32 loss up to bf16 rounding of the frozen weights and activations.
        var fp32 = Path.Combine(Fixture.TempDir(), "fp32");
        new Distiller(Settings(data, fp32) with { Epochs = 1 }).Run();
        foreach (var (a, b) in Fixture.Metrics(run).Zip(Fixture.Metrics(fp32)))
            Assert.Equal(b["loss"]!.GetValue<double>(), a["loss"]!.GetValue<double>(), 0.02);

        var kd = Path.Combine(Fixture.TempDir(), "kd");
        new Distiller(Settings(data, kd) with { Precision = Precision.Bf16, Epochs = 1, Method = DistillMethod.WecoKd }).Run();
        Assert.All(Fixture.Metrics(kd), m => Assert.True(double.IsFinite(m["loss"]!.GetValue<double>())));
    }

    [Fact]
    public void A_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint()
    {
        var run = Path.Combine(Fixture.TempDir(), "run");
        var s = Settings(Fixture.MakeTwoClassData(), run) with { Method = DistillMethod.WecoKd, Lr = 1e25, WarmupEpochs = 0, WeightDecay = 0 };
        var e = Assert.Throws<DistillationException>(() => new Distiller(s).Run());
        Assert.Contains("loss is", e.Message);
        Assert.Contains("batch files", e.Message);
        Assert.False(Directory.Exists(Path.Combine(run, "student")));
    }

    [Fact]
    public void An_output_folder_holding_a_run_is_refused_without_resume_or_overwrite()
    {
        var data = Fixture.MakeTwoClassData();
        var run = Path.Combine(Fixture.TempDir(), "run");
        new Distiller(Settings(data, run) with { Epochs = 0 }).Run();
        var e = Assert.Throws<ArgumentException>(() => new Distiller(Settings(data, run) with { Epochs = 0 }).Run());
        Assert.Contains("--resume", e.Message);
        new Distiller(Settings(data, run) with { Epochs = 0 }).Run(overwrite: true);
        var d = Assert.Throws<DistillationException>(() => new Distiller(Settings(data, run) with { Rank = 8 }).Run(resume: true));
        Assert.Contains("rank", d.Message);
    }
}
