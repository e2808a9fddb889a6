using TorchSharp;
using TorchSharp.Modules;
using WeCoLoRA.Models;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace WeCoLoRA.Lora;

#pragma warning disable IDE1006 // PEFT's names (base_layer, lora_A, lora_B) are the state-dict keys

/// <summary>
/// PEFT-style low-rank adapter around a frozen linear map: y = W x + b + scaling · B (A x), A: rank×in
/// (kaiming-uniform, a = √5), B: out×rank (zeros, so the wrapped layer starts equal to the base).
/// The base layer's output may be split into equal parts (timm's fused qkv → q, k, v), each with its own
/// A/B pair; parts without one are left unadapted.
/// </summary>
public sealed class LoraLinear : Module<Tensor, Tensor>, IPartedLinear
{
    public readonly Linear base_layer;
    public readonly Module lora_A;
    public readonly Module lora_B;

    /// <summary>Names of the output parts, in order ("q", "k", "v" for qkv; one part "" for a plain linear).</summary>
    public IReadOnlyList<string> Parts { get; }
    /// <summary>The adapted parts, a subset of <see cref="Parts"/>.</summary>
    public IReadOnlyList<string> AdaptedParts { get; }
    public int Rank { get; }
    public double Scaling { get; }
    public bool Merged { get; private set; }

    readonly Dictionary<string, Linear> a = new(), b = new();

    /// <param name="generator">Draws the A initialisation; adapters about to be loaded from a file may leave it null.</param>
    public LoraLinear(Linear baseLayer, int rank, double alpha, IReadOnlyList<string>? parts = null, IReadOnlyList<string>? adapted = null,
        Generator? generator = null)
        : base(nameof(LoraLinear))
    {
        long inFeatures = baseLayer.weight!.shape[1], outFeatures = baseLayer.weight.shape[0];
        Parts = parts ?? [""];
        AdaptedParts = adapted ?? Parts;
        if (rank < 1 || rank > Math.Min(inFeatures, outFeatures / Parts.Count))
            throw new ArgumentException($"LoRA rank {rank} must be in 1..{Math.Min(inFeatures, outFeatures / Parts.Count)} for a {inFeatures}→{outFeatures} linear map");
        if (outFeatures % Parts.Count != 0 || AdaptedParts.Any(p => !Parts.Contains(p)))
            throw new ArgumentException($"cannot split {outFeatures} outputs into parts {string.Join(",", Parts)} / adapt {string.Join(",", AdaptedParts)}");
        Rank = rank;
        Scaling = alpha / rank;
        base_layer = baseLayer;
        foreach (var p in base_layer.parameters()) p.requires_grad = false;
        foreach (var part in AdaptedParts)
        {
            a[part] = Linear(inFeatures, rank, hasBias: false);
            b[part] = Linear(rank, outFeatures / Parts.Count, hasBias: false);
            if (generator is not null) SeededInit.KaimingUniformA5(a[part].weight!, generator);
            using var _ = no_grad();
            init.zeros_(b[part].weight!);
        }
        // A single part is stored as lora_A.weight (PEFT's file layout); several as lora_A.q.weight, ...
        if (Parts.Count == 1)
        {
            lora_A = a[Parts[0]];
            lora_B = b[Parts[0]];
        }
        else
        {
            lora_A = ModuleDict(AdaptedParts.Select(p => (p, a[p])).ToArray());
            lora_B = ModuleDict(AdaptedParts.Select(p => (p, b[p])).ToArray());
        }
        RegisterComponents();
    }

    public long PartSize => base_layer.weight!.shape[0] / Parts.Count;

    public override Tensor forward(Tensor x) =>
        Merged ? base_layer.call(x) : Parts.Count == 1 ? ForwardParts(x)![0] : cat(ForwardParts(x)!, -1);

    /// <summary>
    /// Each part as base part + scaling · B (A x): y = x Wᵀ + b on the part's rows of W, then y += scaling · (A x) Bᵀ
    /// in place. Compared with adding a separate delta, that writes each output twice instead of four times, and
    /// bf16 adds are slow on CPU (5% of a step). The parts are computed on the 2-D view of x so that none is a view
    /// itself (autograd copies the whole gradient for in-place ops on views).
    /// </summary>
    public Tensor[]? ForwardParts(Tensor x)
    {
        if (Merged) return null;
        using var scope = NewDisposeScope();
        var x2 = x.reshape(-1, x.shape[^1]);
        // Adapter weights stay fp32 and are cast to the activations' dtype (bf16 runs), like autocast would.
        // One matmul with the stacked A's, then each part's B on its slice of the rank dimension.
        var stackedA = AdaptedParts.Count == 1 ? a[AdaptedParts[0]].weight! : cat(AdaptedParts.Select(p => a[p].weight!).ToArray(), 0);
        var ax = functional.linear(x2, stackedA.to(x.dtype));
        var w = base_layer.weight!;
        var bias = base_layer.bias;
        long size = PartSize;
        var outs = new Tensor[Parts.Count];
        int k = 0;
        for (int i = 0; i < Parts.Count; i++)
        {
            var y = Parts.Count == 1 ? base_layer.call(x2) : functional.linear(x2, w.narrow(0, i * size, size), bias?.narrow(0, i * size, size));
            if (AdaptedParts.Contains(Parts[i]))
                y.addmm_(ax.narrow(1, k++ * Rank, Rank), b[Parts[i]].weight!.to(x.dtype).t(), beta: 1, alpha: (float)Scaling);
            outs[i] = y.view([.. x.shape[..^1], size]).MoveToOuterDisposeScope();
        }
        return outs;
    }

    /// <summary>scaling · B A for each part, stacked into the base weight's shape (zeros for unadapted parts).</summary>
    public Tensor DeltaWeight()
    {
        using var scope = NewDisposeScope();
        var w = base_layer.weight!;
        var rows = Parts.Select(p => AdaptedParts.Contains(p)
            ? matmul(b[p].weight!, a[p].weight!).mul(Scaling)
            : zeros(PartSize, w.shape[1], dtype: w.dtype, device: w.device)).ToArray();
        return cat(rows, 0).to(w.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>Folds the adapters into the base weight: W' = W + scaling · B A. Forward then uses W' alone.</summary>
    public void Merge()
    {
        if (Merged) return;
        using var _ = no_grad();
        using var d = DeltaWeight();
        base_layer.weight!.add_(d);
        Merged = true;
    }

    public void Unmerge()
    {
        if (!Merged) return;
        using var _ = no_grad();
        using var d = DeltaWeight();
        base_layer.weight!.sub_(d);
        Merged = false;
    }
}
