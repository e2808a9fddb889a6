using WeCoLoRA.Models;
using static TorchSharp.torch;

namespace WeCoLoRA.Distillation;

/// <summary>What the student is fitted to for one batch: the teacher's output and, for block alignment, every block's.</summary>
public sealed record TeacherTargets(Tensor Output, IReadOnlyList<Tensor>? Blocks);

/// <summary>
/// The feature-distillation loss of a method (METHOD.md): L1 between teacher and student last-block tokens before the
/// final norm (LoRA methods) or after it (WeCo+KD, KD from scratch), optionally averaged with block alignment terms.
/// Split into teacher and student halves so the benchmark can time each.
/// </summary>
public sealed class DistillationObjective(VisionTransformer teacher, VisionTransformer student, DistillMethod method, Alignment align, int[] keep)
{
    readonly bool finalNorm = method is DistillMethod.WecoKd or DistillMethod.KdScratch;

    /// <summary>Teacher forward without autograd; targets are cloned out of inference mode so backward may save them.</summary>
    public TeacherTargets Teach(Tensor images)
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
    public Tensor Loss(Tensor images, TeacherTargets targets)
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
    /// One micro-batch: targets (from <paramref name="cache"/> when it holds all of <paramref name="indices"/>), loss,
    /// backward scaled for gradient accumulation; returns the loss.
    /// </summary>
    public double Step(Tensor images, int accumIter = 1, TeacherCache? cache = null, int[]? indices = null)
    {
        using var scope = NewDisposeScope();
        var targets = cache?.TryGet(indices!);
        if (targets is null)
        {
            targets = Teach(images);
            cache?.Put(indices!, targets);
        }
        var loss = Loss(images, targets);
        (loss / accumIter).backward();
        return loss.item<float>();
    }
}
