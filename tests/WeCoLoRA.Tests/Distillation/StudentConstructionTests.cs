using WeCoLoRA.Distillation;
using WeCoLoRA.Models;
using static TorchSharp.torch;

namespace WeCoLoRA.Tests.Distillation;

public sealed class StudentConstructionTests
{
    [Theory]
    [InlineData(12, 2, new[] { 0, 2, 4, 6, 8, 10 })]
    [InlineData(12, 3, new[] { 0, 3, 6, 9 })]
    [InlineData(12, 5, new[] { 0, 5, 10 })]
    [InlineData(3, 1, new[] { 0, 1, 2 })]
    public void Every_rth_block_is_kept(int depth, int r, int[] expected) => Assert.Equal(expected, WeightCopy.EveryRth(depth, r));

    [Theory]
    [InlineData(0)]
    [InlineData(13)]
    public void R_outside_the_depth_is_refused(int r)
    {
        var e = Assert.Throws<ArgumentException>(() => WeightCopy.EveryRth(12, r));
        Assert.Contains($"--r {r}", e.Message);
    }

    [Theory]
    [InlineData("0,3,7", 12, new[] { 0, 3, 7 })]
    [InlineData("5", 12, new[] { 5 })]
    public void Keep_lists_parse(string text, int depth, int[] expected) => Assert.Equal(expected, WeightCopy.ParseKeep(text, depth));

    [Theory]
    [InlineData("3,1")]
    [InlineData("0,12")]
    [InlineData("a,b")]
    [InlineData("")]
    public void Bad_keep_lists_are_refused(string text) =>
        Assert.Contains("--keep", Assert.Throws<ArgumentException>(() => WeightCopy.ParseKeep(text, 12)).Message);

    [Fact]
    public void The_student_holds_exact_copies_of_the_kept_blocks_and_the_shared_parts()
    {
        manual_seed(0);
        var teacher = new VisionTransformer(new VitConfig { ImgSize = 32, PatchSize = 8, EmbedDim = 48, Depth = 5, NumHeads = 3, NumClasses = 5 });
        var student = WeightCopy.CreateStudent(teacher, [0, 3, 4]);
        Assert.Equal(3, student.Config.Depth);
        var t = teacher.state_dict();
        foreach (var (key, value) in student.state_dict())
        {
            var source = key.StartsWith("blocks.0.") ? key : key.StartsWith("blocks.1.") ? "blocks.3." + key[9..] : key.StartsWith("blocks.2.") ? "blocks.4." + key[9..] : key;
            Assert.True(value.allclose(t[source], rtol: 0, atol: 0), key);
        }
    }

    // Tests run in parallel and draw from the process-wide generator, so a student seeded through it would not repeat.
    [Theory]
    [InlineData(DistillMethod.WeCoLoRA)]
    [InlineData(DistillMethod.KdScratch)]
    public void The_students_random_init_depends_on_the_seed_alone(DistillMethod method)
    {
        manual_seed(0);
        var teacher = new VisionTransformer(new VitConfig { ImgSize = 32, PatchSize = 8, EmbedDim = 48, Depth = 4, NumHeads = 3, NumClasses = 0 });
        var settings = new DistillSettings { Teacher = "", Data = "", Out = "", Method = method, Rank = 4 };
        Dictionary<string, Tensor> Random(long globalSeed, int seed)
        {
            manual_seed(globalSeed);
            var student = Distiller.BuildStudent(teacher, settings with { Seed = seed });
            // Copies, taken while the student is alive: its finalizer disposes the parameters the state dict refers to.
            var values = student.state_dict().Where(kv => kv.Key.Contains("lora_A") || method == DistillMethod.KdScratch)
                .ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());
            GC.KeepAlive(student);
            return values;
        }
        var a = Random(1, 7);
        var b = Random(2, 7);
        var c = Random(1, 8);
        Assert.NotEmpty(a);
        foreach (var (key, value) in a)
        {
            Assert.True(value.allclose(b[key], rtol: 0, atol: 0), key);
            if (value.std().item<float>() > 0) Assert.False(value.allclose(c[key]), key);
        }
    }

    [Fact]
    public void The_few_shot_subset_keeps_floor_ratio_per_class_at_least_one_and_is_seeded()
    {
        var root = Fixture.TempDir();
        foreach (var (cls, n) in new[] { ("a", 10), ("b", 3), ("c", 25) })
        {
            Directory.CreateDirectory(Path.Combine(root, cls));
            for (int i = 0; i < n; i++) File.Copy(Fixture.Path("models", "images", "a.png"), Path.Combine(root, cls, $"{i:D2}.png"));
        }
        var subset = FewShotSubset.Select(root, 0.2, seed: 7);
        Assert.Equal([2, 1, 5], subset.GroupBy(i => i.RelativePath[0]).Select(g => g.Count()));
        Assert.Equal(subset.Select(i => i.RelativePath), FewShotSubset.Select(root, 0.2, seed: 7).Select(i => i.RelativePath));
        Assert.NotEqual(subset.Select(i => i.RelativePath), FewShotSubset.Select(root, 0.2, seed: 8).Select(i => i.RelativePath));
        Assert.Equal(38, FewShotSubset.Select(root, 1.0, 0).Count);
    }
}
