using System.Text.RegularExpressions;
using WeCoLoRA.Models;
using static TorchSharp.torch;

namespace WeCoLoRA.Distillation;

/// <summary>Step 1 of WeCoLoRA: a shallower student made of every r-th teacher block.</summary>
public static partial class WeightCopy
{
    /// <summary>Teacher blocks 0, r, 2r, … (0-based) below <paramref name="depth"/>.</summary>
    public static int[] EveryRth(int depth, int r)
    {
        if (r < 1 || r > depth)
            throw new ArgumentException($"--r {r} must be in 1..{depth} (the teacher's depth)");
        return Enumerable.Range(0, depth).Where(i => i % r == 0).ToArray();
    }

    /// <summary>Validates an explicit list of teacher block indices (strictly increasing, inside the teacher).</summary>
    public static int[] ParseKeep(string text, int depth)
    {
        int[] keep;
        try
        {
            keep = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray();
        }
        catch (FormatException)
        {
            throw new ArgumentException($"--keep '{text}' must be a comma list of block indices, e.g. 0,3,7");
        }
        if (keep.Length == 0 || keep.Any(i => i < 0 || i >= depth) || keep.Zip(keep.Skip(1)).Any(p => p.First >= p.Second))
            throw new ArgumentException($"--keep '{text}' must list increasing block indices in 0..{depth - 1}");
        return keep;
    }

    /// <summary>
    /// A student of depth keep.Length whose blocks are copies of the kept teacher blocks; patch embedding,
    /// class token, position embedding, final norm(s) and head are copied unchanged.
    /// </summary>
    public static VisionTransformer CreateStudent(VisionTransformer teacher, IReadOnlyList<int> keep)
    {
        var student = new VisionTransformer(teacher.Config with { Depth = keep.Count });
        var source = teacher.state_dict();
        using var _ = no_grad();
        foreach (var (key, target) in student.state_dict())
        {
            var m = BlockKey().Match(key);
            var teacherKey = m.Success ? $"blocks.{keep[int.Parse(m.Groups[1].Value)]}.{m.Groups[2].Value}" : key;
            target.copy_(source[teacherKey]);
        }
        return student;
    }

    /// <summary>
    /// timm's init for a ViT trained from scratch: trunc-normal(0.02) linears and pos_embed, zero biases, unit norms,
    /// cls_token N(0, 1e-6), and PyTorch's default conv init for the patch embedding, all drawn from <paramref name="seed"/>.
    /// </summary>
    public static void InitFromScratch(VisionTransformer model, long seed)
    {
        using var _ = no_grad();
        var g = new Generator((ulong)seed);
        var conv = model.patch_embed.proj;
        SeededInit.ResetParameters(conv.weight!, conv.bias, g);
        foreach (var (name, p) in model.named_parameters())
        {
            if (name.StartsWith("patch_embed", StringComparison.Ordinal)) continue;
            if (name.EndsWith(".bias", StringComparison.Ordinal)) p.zero_();
            else if (name == "cls_token") p.normal_(0, 1e-6, g);
            else if (name.Contains("norm", StringComparison.Ordinal)) p.fill_(1.0);
            else TruncNormal(p, 0.02, g);
        }
    }

    // trunc_normal_(std, a=-2, b=2) as timm calls it (bounds are absolute, i.e. ±100 std: effectively a normal).
    static void TruncNormal(Tensor p, double std, Generator g)
    {
        p.normal_(0, std, g);
        p.clamp_(-2.0, 2.0);
    }

    [GeneratedRegex(@"^blocks\.(\d+)\.(.+)$")]
    private static partial Regex BlockKey();
}
