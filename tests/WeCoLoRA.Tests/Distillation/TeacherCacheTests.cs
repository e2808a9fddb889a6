using WeCoLoRA.Checkpoints;
using WeCoLoRA.Distillation;
using WeCoLoRA.Tests.Cli;
using static TorchSharp.torch;

namespace WeCoLoRA.Tests.Distillation;

/// <summary>
/// Exact comparisons run alone: with other tests computing at the same time, MKL may pick another thread count for a
/// GEMM and round the last bit differently.
/// </summary>
[Collection(nameof(ConsoleCollection))]
public sealed class TeacherCacheTests
{
    static DistillSettings Settings(string data, string outDir, TeacherCacheMode mode, Alignment align = Alignment.Last) => new()
    {
        Teacher = Fixture.Path("models", "timm_hub"), Data = data, Out = outDir, Epochs = 3, WarmupEpochs = 1, BatchSize = 4, Rank = 4,
        Lr = 5e-3, Workers = 2, NoAugment = true, TeacherCache = mode, Align = align,
    };

    static (List<double> Losses, Dictionary<string, Tensor> Adapters, List<string> Notes) Run(string data, TeacherCacheMode mode, Alignment align)
    {
        var run = Path.Combine(Fixture.TempDir(), "run");
        var observer = new StepObserver();
        new Distiller(Settings(data, run, mode, align), observer).Run();
        Assert.False(File.Exists(Path.Combine(run, "teacher-cache.bin")), "the cache file outlived the run");
        return (Fixture.Metrics(run).Select(m => m["loss"]!.GetValue<double>()).ToList(),
            SafeTensors.Load(Path.Combine(run, "student", "adapter_model.safetensors")), observer.Notes);
    }

    /// <summary>12 images, 3 epochs: the teacher runs on the 12 images once and 24 targets come from the cache.</summary>
    [Theory]
    [InlineData(TeacherCacheMode.Memory, Alignment.Last)]
    [InlineData(TeacherCacheMode.Disk, Alignment.Last)]
    [InlineData(TeacherCacheMode.Memory, Alignment.Blocks)]
    public void Cached_targets_train_exactly_like_running_the_teacher_every_epoch(TeacherCacheMode mode, Alignment align)
    {
        var data = Fixture.MakeTwoClassData();
        var (expected, expectedAdapters, offNotes) = Run(data, TeacherCacheMode.Off, align);
        var (actual, actualAdapters, notes) = Run(data, mode, align);
        Assert.DoesNotContain(offNotes, n => n.StartsWith("teacher cache"));
        Assert.Contains("teacher cache: 24 of 36 targets reused", notes);
        Assert.Contains(notes, n => n.Contains(mode == TeacherCacheMode.Disk ? "memory-mapped at" : "in memory"));
        Assert.Equal(expected, actual);
        foreach (var (k, v) in expectedAdapters) Assert.True(v.allclose(actualAdapters[k], rtol: 0, atol: 0), k);
    }

    [Fact]
    public void A_cache_is_only_made_when_inputs_repeat_and_an_epoch_is_left_to_reuse_it()
    {
        var data = Fixture.MakeTwoClassData();
        var augmented = new StepObserver();
        new Distiller(Settings(data, Path.Combine(Fixture.TempDir(), "run"), TeacherCacheMode.Memory) with { NoAugment = false }, augmented).Run();
        var oneEpoch = new StepObserver();
        new Distiller(Settings(data, Path.Combine(Fixture.TempDir(), "run"), TeacherCacheMode.Memory) with { Epochs = 1 }, oneEpoch).Run();
        Assert.DoesNotContain(augmented.Notes.Concat(oneEpoch.Notes), n => n.StartsWith("teacher cache"));
    }
}
