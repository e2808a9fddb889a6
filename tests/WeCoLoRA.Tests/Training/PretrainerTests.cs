using System.Text.Json.Nodes;
using WeCoLoRA.Checkpoints;
using WeCoLoRA.Data;
using WeCoLoRA.Distillation;
using WeCoLoRA.Tests.Cli;
using WeCoLoRA.Training;

namespace WeCoLoRA.Tests.Training;

/// <summary>Supervised training end to end on a dozen fixture images and a two-block 16-px ViT; each run takes a second or two.</summary>
public sealed class PretrainerTests
{
    const string TinyArch = "img_size=16,patch_size=8,embed_dim=16,depth=2,num_heads=2";

    static PretrainSettings Settings(string data, string outDir) => new()
    {
        Data = data, Test = data, Out = outDir, ModelArgs = TinyArch, Epochs = 3, WarmupEpochs = 1, BatchSize = 4, Lr = 1e-3, Workers = 2, CropPadding = 2,
    };

    [Fact]
    public void A_few_steps_write_a_loadable_classifier_with_the_datasets_classes_and_normalization()
    {
        var run = Path.Combine(Fixture.TempDir(), "run");
        var result = new Pretrainer(Settings(Fixture.MakeTwoClassData(), run)).Run();
        Assert.Equal(9, Fixture.Metrics(run).Count); // 12 images, batch 4, 3 epochs
        Assert.Equal(["step-00000006", "step-00000009"], Directory.GetDirectories(Path.Combine(run, "checkpoints")).Select(Path.GetFileName).Order());
        Assert.NotNull(result.TestAccuracy);
        Assert.Equal(12, result.TestImages);
        var loaded = ModelLoader.Load(Path.Combine(run, "model"));
        Assert.Equal(2, loaded.Config.NumClasses);
        Assert.Equal(2, loaded.Config.Depth);
        Assert.Equal(1.0, loaded.Config.CropPct);
        Assert.All(loaded.Config.Mean, m => Assert.InRange(m, 0.01f, 0.99f));
        Assert.All(loaded.Config.Std, s => Assert.True(s > 0));
        Assert.Equal(["x", "y"], LabelNames.Read(Path.Combine(run, "model", "config.json"), 2));
        // The saved classifier scores what the run reported.
        var data = DatasetSource.Open(Settings(Fixture.MakeTwoClassData(), run).Data);
        Assert.Equal(result.TestAccuracy!.Value, Pretrainer.Accuracy(loaded.Model, data.Items), 6);
    }

    [Fact]
    public void Resume_after_a_kill_mid_epoch_reproduces_the_uninterrupted_run_exactly()
    {
        var data = Fixture.MakeTwoClassData();
        var full = Path.Combine(Fixture.TempDir(), "full");
        new Pretrainer(Settings(data, full)).Run();

        var killed = Path.Combine(Fixture.TempDir(), "killed");
        Assert.Throws<OperationCanceledException>(() => new Pretrainer(Settings(data, killed), StepObserver.KillAfter(5)).Run());
        Assert.Equal(5, Fixture.Metrics(killed).Count);
        new Pretrainer(Settings(data, killed)).Run(resume: true);

        static List<(long, double, double)> Steps(string run) =>
            Fixture.Metrics(run).Select(m => (m["step"]!.GetValue<long>(), m["loss"]!.GetValue<double>(), m["lr"]!.GetValue<double>())).ToList();
        Assert.Equal(Steps(full), Steps(killed));
        var a = SafeTensors.Load(Path.Combine(full, "model", "model.safetensors"));
        var b = SafeTensors.Load(Path.Combine(killed, "model", "model.safetensors"));
        foreach (var (k, v) in a) Assert.True(v.allclose(b[k], rtol: 0, atol: 0), k);
    }

    [Fact]
    public void Resume_with_other_settings_is_refused_and_a_held_folder_needs_overwrite()
    {
        var data = Fixture.MakeTwoClassData();
        var run = Path.Combine(Fixture.TempDir(), "run");
        new Pretrainer(Settings(data, run) with { Epochs = 1 }).Run();
        var e = Assert.Throws<DistillationException>(() => new Pretrainer(Settings(data, run) with { Epochs = 1, Lr = 2e-3 }).Run(resume: true));
        Assert.Contains("lr", e.Message);
        Assert.Throws<ArgumentException>(() => new Pretrainer(Settings(data, run) with { Epochs = 1 }).Run());
        new Pretrainer(Settings(data, run) with { Epochs = 1 }).Run(overwrite: true);
    }

    [Fact]
    public void Fine_tuning_from_init_replaces_a_head_of_another_size()
    {
        var data = Fixture.MakeTwoClassData();
        var run = Path.Combine(Fixture.TempDir(), "run");
        var settings = Settings(data, run) with { ModelArgs = null, Init = Fixture.Path("models", "timm_hub"), Epochs = 1, CropPadding = null };
        new Pretrainer(settings).Run();
        var loaded = ModelLoader.Load(Path.Combine(run, "model"));
        Assert.Equal(2, loaded.Config.NumClasses);
        Assert.Equal(ModelLoader.Load(Fixture.Path("models", "timm_hub")).Config.Depth, loaded.Config.Depth);
    }

    [Fact]
    public void Pad_crop_flip_keeps_the_size_and_is_seeded()
    {
        var img = new RgbImage(8, 8);
        for (int i = 0; i < img.Pixels.Length; i++) img.Pixels[i] = (byte)(i % 251);
        var p = Preprocess.ImageNet(8, 1.0);
        var a = p.PadCropFlip(img, 2, BatchLoader.SampleRandom(1, 0, 3));
        var b = p.PadCropFlip(img, 2, BatchLoader.SampleRandom(1, 0, 3));
        Assert.Equal(8, a.Width);
        Assert.Equal(a.Pixels, b.Pixels);
        var none = p.PadCropFlip(img, 0, new Random(0));
        Assert.True(none.Pixels.SequenceEqual(img.Pixels) || none.Pixels.SequenceEqual(Transforms.HorizontalFlip(img).Pixels));
    }

    [Fact]
    public void The_few_shot_subset_of_an_idx_set_is_stratified_by_label()
    {
        var spec = $"idx:{Path.Combine(EmbeddedData.DataDir(), EmbeddedData.SubsetName)}:train";
        var items = FewShotSubset.Select(spec, 0.01, 0);
        Assert.Equal(60, items.Count);
        Assert.All(items.GroupBy(i => i.Label), g => Assert.Equal(6, g.Count()));
        Assert.Equal(items.Select(i => i.RelativePath), FewShotSubset.Select(spec, 0.01, 0).Select(i => i.RelativePath));
    }

    [Fact]
    public void The_embedded_subset_is_6000_and_1000_images_balanced_over_the_ten_classes()
    {
        var dir = Path.Combine(EmbeddedData.DataDir(), EmbeddedData.SubsetName);
        var train = DatasetSource.Open($"idx:{dir}:train");
        var test = DatasetSource.Open($"idx:{dir}:test");
        Assert.Equal(6000, train.Items.Count);
        Assert.Equal(1000, test.Items.Count);
        Assert.Equal(DatasetSource.FashionMnistClasses, train.Classes);
        Assert.All(train.Items.GroupBy(i => i.Label), g => Assert.Equal(600, g.Count()));
        Assert.Contains(EmbeddedData.HasFullFashionMnist ? EmbeddedData.FullFashionMnistDir : EmbeddedData.SubsetName, EmbeddedData.FashionMnist("train"));
    }
}

[Collection(nameof(ConsoleCollection))]
public sealed class PretrainCliTests
{
    [Theory]
    [InlineData(new[] { "--out", "o" }, "--data")]
    [InlineData(new[] { "--data", "d", "--out", "o" }, "--arch")]
    [InlineData(new[] { "--data", "d", "--out", "o", "--model-args", "depth=2,colour=red" }, "colour")]
    [InlineData(new[] { "--data", "d", "--out", "o", "--model-args", "depth=two" }, "not an integer")]
    [InlineData(new[] { "--data", "d", "--out", "o", "--arch", "vit_tiny_patch16_224", "--label-smoothing", "1.5" }, "--label-smoothing")]
    [InlineData(new[] { "--data", "d", "--out", "o", "--init", "m", "--arch", "vit_tiny_patch16_224" }, "--init")]
    [InlineData(new[] { "--data", "/nonexistent-dir", "--out", "o", "--arch", "vit_tiny_patch16_224" }, "nonexistent")]
    [InlineData(new[] { "--data", "d", "--out", "o", "--arch", "vit_tiny_patch16_224", "--mean", "a,b" }, "--mean")]
    public void Bad_arguments_are_one_error_line(string[] args, string mentions)
    {
        var (code, _, err) = CliRunner.Run(["pretrain", .. args]);
        Assert.NotEqual(0, code);
        Assert.Contains(mentions, err);
        Assert.DoesNotContain("   at ", err);
    }
}

public sealed class EmbeddedTeacherTests
{
    [Fact]
    public void The_embedded_teacher_is_a_12_block_28px_patch4_fashion_mnist_classifier()
    {
        var loaded = WeCoLoRA.Checkpoints.ModelLoader.Load(EmbeddedData.Teacher);
        var cfg = loaded.Config;
        Assert.Equal((12, 28, 4, 10), (cfg.Depth, cfg.ImgSize, cfg.PatchSize, cfg.NumClasses));
        Assert.Equal(49, cfg.NumPatches);
        Assert.InRange(cfg.EmbedDim, 128, 192);
        Assert.Equal(1.0, cfg.CropPct);
        Assert.All(cfg.Mean, m => Assert.InRange(m, 0.27f, 0.30f)); // Fashion-MNIST's 0.2860, replicated over RGB
        Assert.Equal(DatasetSource.FashionMnistClasses, WeCoLoRA.Checkpoints.LabelNames.Read(Path.Combine(EmbeddedData.Teacher, "config.json"), 10));
        // It classifies the embedded test subset far above chance (10%).
        var test = DatasetSource.Subset(DatasetSource.Open($"idx:{Path.Combine(EmbeddedData.DataDir(), EmbeddedData.SubsetName)}:test").Items, 200);
        Assert.True(Pretrainer.Accuracy(loaded.Model, test) > 0.4);
    }
}
