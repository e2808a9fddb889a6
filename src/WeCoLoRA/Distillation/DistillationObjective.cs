using System.Diagnostics;
using TorchSharp;
using WeCoLoRA.Models;
using WeCoLoRA.Runtime;
using static TorchSharp.torch;

namespace WeCoLoRA.Distillation;

/// <summary>What the student is fitted to for one batch: the teacher's output and, for block alignment, every block's.</summary>
public sealed record TeacherTargets(Tensor Output, IReadOnlyList<Tensor>? Blocks) : IDisposable
{
    /// <summary>Targets of images [from, from + size) of the batch.</summary>
    public TeacherTargets Narrow(int from, int size) => new(Output.narrow(0, from, size), Blocks?.Select(b => b.narrow(0, from, size)).ToList());

    public TeacherTargets DetachFromDisposeScope() => new(Output.DetachFromDisposeScope(), Blocks?.Select(b => b.DetachFromDisposeScope()).ToList());

    public void Dispose()
    {
        Output.Dispose();
        foreach (var b in Blocks ?? []) b.Dispose();
    }
}

/// <summary>
/// The feature-distillation loss of a method (METHOD.md): L1 between teacher and student last-block tokens before the
/// final norm (LoRA methods) or after it (WeCo+KD, KD from scratch), optionally averaged with block alignment terms.
/// </summary>
/// <param name="lanes">Threads that each take a shard of every batch; null runs the batch whole on the calling thread.</param>
public sealed class DistillationObjective(VisionTransformer teacher, VisionTransformer student, DistillMethod method, Alignment align, int[] keep,
    TorchLanes? lanes = null)
{
    readonly bool finalNorm = method is DistillMethod.WecoKd or DistillMethod.KdScratch;
    readonly Tensor[] trainable = [.. student.parameters().Where(p => p.requires_grad)];

    /// <summary>Teacher forward without autograd; targets are cloned out of inference mode so backward may save them.</summary>
    TeacherTargets Teach(Tensor images)
    {
        var blocks = align == Alignment.Blocks ? new List<Tensor>() : null;
        Tensor output;
        using (inference_mode())
        {
            var tokens = teacher.ForwardTokens(images.to(teacher.pos_embed.dtype), blocks);
            output = finalNorm ? teacher.NormTokens(tokens) : tokens;
        }
        return new TeacherTargets(output.to(float32).clone(), blocks?.Select(b => b.to(float32).clone()).ToList());
    }

    /// <summary>Student forward and the fp32 loss scalar (student block i against teacher block keep[i+1] − 1).</summary>
    Tensor Loss(Tensor images, TeacherTargets targets)
    {
        var studentBlocks = targets.Blocks is null ? null : new List<Tensor>();
        var tokens = student.ForwardTokens(images.to(student.pos_embed.dtype), studentBlocks);
        var output = finalNorm ? student.NormTokens(tokens) : tokens;
        var loss = nn.functional.l1_loss(output.to(float32), targets.Output);
        if (targets.Blocks is null) return loss;
        var terms = new List<Tensor> { loss };
        for (int i = 0; i < keep.Length - 1; i++)
            terms.Add(nn.functional.l1_loss(studentBlocks![i].to(float32), targets.Blocks[keep[i + 1] - 1]));
        return stack(terms).mean();
    }

    /// <summary>
    /// One micro-batch: targets (from <paramref name="cache"/> when it holds all of <paramref name="indices"/>), loss, and
    /// the gradients, scaled for gradient accumulation and added to the trainable parameters' grads. With lanes the batch
    /// is split into one contiguous shard per lane; the shards' gradients are summed in lane order, so a run repeats
    /// exactly for a given lane count.
    /// </summary>
    public StepResult Step(Tensor images, int accumIter = 1, TeacherCache? cache = null, int[]? indices = null)
    {
        long start = Stopwatch.GetTimestamp();
        using var stepScope = NewDisposeScope();
        int n = (int)images.shape[0];
        int used = Math.Min(lanes?.Count ?? 1, n);
        var cached = cache?.TryGet(indices!);
        var results = new LaneResult[used];
        void Lane(int lane)
        {
            if (lane >= used) return;
            int from = (int)((long)n * lane / used), size = (int)((long)n * (lane + 1) / used) - from;
            using var scope = NewDisposeScope();
            long t0 = Stopwatch.GetTimestamp();
            var shard = used == 1 ? images : images.narrow(0, from, size);
            var targets = cached is null ? Teach(shard) : used == 1 ? cached : cached.Narrow(from, size);
            long t1 = Stopwatch.GetTimestamp();
            var loss = Loss(shard, targets);
            long t2 = Stopwatch.GetTimestamp();
            var grads = autograd.grad([loss * ((double)size / n) / accumIter], trainable, allow_unused: true);
            results[lane] = new LaneResult(loss.item<float>(), from, size,
                [.. grads.Select(g => g.IsInvalid ? null : g.DetachFromDisposeScope())],
                cache is not null && cached is null ? targets.DetachFromDisposeScope() : null,
                Ms(t0, t1), Ms(t1, t2));
        }
        if (used == 1) Lane(0);
        else lanes!.Run(Lane);

        for (int i = 0; i < trainable.Length; i++)
            foreach (var r in results)
            {
                if (r.Grads[i] is not { } g) continue;
                if (trainable[i].grad is { } sum) sum.add_(g);
                else trainable[i].grad = g;
                g.Dispose();
            }
        if (cache is not null && cached is null)
        {
            foreach (var r in results)
            {
                using var targets = r.Targets!;
                cache.Put(indices![r.From..(r.From + r.Size)], targets);
            }
        }
        double total = Ms(start, Stopwatch.GetTimestamp());
        double teacherMs = results.Average(r => r.TeacherMs), studentMs = results.Average(r => r.StudentMs);
        return new StepResult(results.Sum(r => (double)r.Size / n * r.Loss), teacherMs, studentMs, total - teacherMs - studentMs);
    }

    static double Ms(long from, long to) => Stopwatch.GetElapsedTime(from, to).TotalMilliseconds;

    sealed record LaneResult(double Loss, int From, int Size, Tensor?[] Grads, TeacherTargets? Targets, double TeacherMs, double StudentMs);
}

/// <summary>
/// A step's loss and where its time went: teacher forward and student forward (means over the lanes), and the rest
/// (backward, the wait for the slowest lane, the sum of the lanes' gradients).
/// </summary>
public sealed record StepResult(double Loss, double TeacherMs, double StudentMs, double BackwardMs);
