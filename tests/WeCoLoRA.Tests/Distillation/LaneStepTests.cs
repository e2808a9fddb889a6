using WeCoLoRA.Checkpoints;
using WeCoLoRA.Distillation;
using WeCoLoRA.Models;
using WeCoLoRA.Runtime;
using WeCoLoRA.Tests.Cli;
using static TorchSharp.torch;

namespace WeCoLoRA.Tests.Distillation;

/// <summary>Exact repeats are compared, so these run alone (see <see cref="TeacherCacheTests"/>).</summary>
[Collection(nameof(ConsoleCollection))]
public sealed class LaneStepTests
{
    static (DistillationObjective Objective, VisionTransformer Student) Make(TorchLanes? lanes)
    {
        var teacher = ModelLoader.Load(Fixture.Path("models", "timm_hub")).Model;
        var settings = new DistillSettings { Teacher = "", Data = "", Out = "", Rank = 4 };
        var student = Distiller.BuildStudent(teacher, settings, forTraining: true);
        using (no_grad()) // B starts at zero, which would leave A without gradient
            foreach (var (name, p) in student.named_parameters().Where(p => p.name.Contains("lora_B"))) p.normal_(0, 0.1, new Generator(1));
        teacher.eval();
        var keep = Distiller.KeptBlocks(settings, teacher.Config.Depth);
        return (new DistillationObjective(teacher, student, settings.Method, settings.Align, keep, lanes), student);
    }

    /// <summary>Two accumulated micro-batches of 7 images (shards of 2, 2 and 3 with three lanes); the adapters' grads.</summary>
    static (double[] Losses, Dictionary<string, Tensor> Grads) Steps(TorchLanes? lanes, TeacherCache? cache = null)
    {
        var (objective, student) = Make(lanes);
        var g = new Generator(5);
        int[] indices = [0, 1, 2, 3, 4, 5, 6];
        var losses = new double[2];
        for (int i = 0; i < 2; i++)
        {
            using var images = randn([7, 3, 32, 32], generator: g);
            losses[i] = objective.Step(images, accumIter: 2, cache, indices).Loss;
        }
        var grads = student.named_parameters().Where(p => p.parameter.requires_grad).ToDictionary(p => p.name, p => p.parameter.grad!);
        Assert.Equal(24, grads.Count); // 2 blocks × (q, k, v, proj, fc1, fc2) × (A, B)
        return (losses, grads);
    }

    [Fact]
    public void Lanes_sum_to_the_one_lane_gradients_and_repeat_exactly()
    {
        var (oneLoss, one) = Steps(null);
        using var lanes = new TorchLanes(3, 1);
        var (threeLoss, three) = Steps(lanes);
        var (againLoss, again) = Steps(lanes);
        for (int i = 0; i < 2; i++) Assert.Equal(oneLoss[i], threeLoss[i], 1e-6);
        foreach (var (name, grad) in one)
        {
            Assert.True(grad.abs().max().item<float>() > 0, $"{name} got no gradient");
            Assert.True(grad.allclose(three[name], rtol: 1e-4, atol: 1e-7), $"{name}: max diff {(grad - three[name]).abs().max().item<float>()}");
            Assert.True(three[name].allclose(again[name], rtol: 0, atol: 0), $"{name} differs between two runs with three lanes");
        }
        Assert.Equal(threeLoss, againLoss);
    }

    [Fact]
    public void Cached_targets_are_split_between_the_lanes_like_computed_ones()
    {
        using var lanes = new TorchLanes(3, 1);
        using var cache = new TeacherCache(7, 3, 17, 48, blockTargets: false, float32, TeacherCacheMode.Memory, "");
        var (objective, _) = Make(lanes);
        using var images = randn([7, 3, 32, 32], generator: new Generator(5));
        int[] indices = [6, 5, 4, 3, 2, 1, 0];
        double computed = objective.Step(images, cache: cache, indices: indices).Loss;
        double reused = objective.Step(images, cache: cache, indices: indices).Loss;
        Assert.Equal((7, 7), (cache.Misses, cache.Hits));
        Assert.Equal(computed, reused);
    }

    /// <summary>
    /// One step against PyTorch (Fixtures/models/make_distill_step.py): the timm_hub teacher, blocks 0 and 2 kept, LoRA
    /// on all six maps with random A and B, L1 on the last-block tokens; the loss and every adapter's gradient.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void A_step_matches_pytorch(int laneCount)
    {
        var golden = SafeTensors.Load(Fixture.Path("models", "distill_step.safetensors"));
        var teacher = ModelLoader.Load(Fixture.Path("models", "timm_hub")).Model;
        var settings = new DistillSettings { Teacher = "", Data = "", Out = "", Rank = 4, Alpha = 8 };
        var student = Distiller.BuildStudent(teacher, settings, forTraining: true);
        var adapters = student.named_parameters().Where(p => p.parameter.requires_grad).ToList();
        Assert.Equal(24, adapters.Count);
        using (no_grad())
            foreach (var (name, p) in adapters) p.copy_(golden[name]);
        teacher.eval();
        using var lanes = TorchLanes.Create(laneCount, laneCount);
        var objective = new DistillationObjective(teacher, student, settings.Method, settings.Align, Distiller.KeptBlocks(settings, 3), lanes);
        double loss = objective.Step(golden["images"]).Loss;
        Assert.Equal(golden["loss"].item<float>(), loss, 1e-6);
        foreach (var (name, p) in adapters)
        {
            var expected = golden["grad." + name];
            Assert.True(p.grad!.allclose(expected, rtol: 1e-4, atol: 1e-6), $"{name}: max diff {(p.grad! - expected).abs().max().item<float>()}");
        }
        GC.KeepAlive(student); // its finalizer would dispose the parameters read above
    }
}
