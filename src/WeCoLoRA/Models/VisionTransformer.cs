using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace WeCoLoRA.Models;

// Module and field names follow timm's vision_transformer.py so that state-dict keys are timm's
// (patch_embed.proj.weight, blocks.0.attn.qkv.bias, ...). Linear maps are typed as
// Module<Tensor, Tensor> so that LoRA can wrap them in place (see Lora/).
#pragma warning disable IDE1006 // timm's snake_case names are the state-dict keys

/// <summary>Image to patch tokens: a conv with kernel = stride = patch size.</summary>
public sealed class PatchEmbed : Module<Tensor, Tensor>
{
    public readonly Conv2d proj;

    public PatchEmbed(int inChans, int embedDim, int patchSize) : base(nameof(PatchEmbed))
    {
        proj = Conv2d(inChans, embedDim, kernel_size: patchSize, stride: patchSize);
        RegisterComponents();
    }

    // [B, C, H, W] -> [B, N, D]
    public override Tensor forward(Tensor x) => proj.call(x).flatten(2).transpose(1, 2);
}

/// <summary>Base for modules whose linear maps can be swapped for adapters.</summary>
public abstract class LinearHost : Module<Tensor, Tensor>
{
    protected LinearHost(string name) : base(name) { }

    /// <summary>Names of the replaceable linear submodules, as in the state dict.</summary>
    public abstract IReadOnlyList<string> LinearNames { get; }

    public abstract Module<Tensor, Tensor> GetLinear(string name);

    /// <summary>Replaces a linear submodule (keeping its state-dict name) and returns the old one.</summary>
    public Module<Tensor, Tensor> ReplaceLinear(string name, Module<Tensor, Tensor> replacement)
    {
        var old = GetLinear(name);
        register_module(name, null!); // TorchSharp removes a registration when given null
        register_module(name, replacement);
        SetLinear(name, replacement);
        return old;
    }

    protected abstract void SetLinear(string name, Module<Tensor, Tensor> module);

    protected ArgumentException Unknown(string name) =>
        new($"{GetType().Name} has no linear map '{name}'; it has {string.Join(", ", LinearNames)}");
}

/// <summary>
/// A linear map whose output is made of equal parts (timm's fused qkv) and that can return them as separate tensors,
/// sparing the concatenation when the consumer splits them again anyway.
/// </summary>
public interface IPartedLinear
{
    /// <summary>The output's parts, in order, each [..., out / parts]; null when the map computes them fused.</summary>
    Tensor[]? ForwardParts(Tensor x);
}

public sealed class Attention : LinearHost
{
    public Module<Tensor, Tensor> qkv;
    public Module<Tensor, Tensor> proj;
    readonly long numHeads;

    public Attention(int dim, int numHeads, bool qkvBias) : base(nameof(Attention))
    {
        this.numHeads = numHeads;
        qkv = Linear(dim, dim * 3, hasBias: qkvBias);
        proj = Linear(dim, dim);
        RegisterComponents();
    }

    public override IReadOnlyList<string> LinearNames => ["qkv", "proj"];

    public override Module<Tensor, Tensor> GetLinear(string name) => name switch
    {
        "qkv" => qkv,
        "proj" => proj,
        _ => throw Unknown(name),
    };

    protected override void SetLinear(string name, Module<Tensor, Tensor> module)
    {
        switch (name)
        {
            case "qkv": qkv = module; break;
            case "proj": proj = module; break;
            default: throw Unknown(name);
        }
    }

    /// <summary>
    /// When set, every forward appends its attention probabilities softmax(q kᵀ / √head_dim), [B, heads, N, N], from the
    /// same qkv output (adapters included); the caller owns and disposes them.
    /// </summary>
    public List<Tensor>? AttentionCapture { get; set; }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], n = x.shape[1], c = x.shape[2];
        // [B, N, 3C] -> q, k, v of [B, heads, N, head_dim]
        var parts = qkv is IPartedLinear parted && parted.ForwardParts(x) is { } qkvParts
            ? qkvParts.Select(t => t.view(b, n, numHeads, c / numHeads).transpose(1, 2)).ToArray()
            : qkv.call(x).reshape(b, n, 3, numHeads, c / numHeads).permute(2, 0, 3, 1, 4).unbind(0);
        Tensor o;
        // libtorch's CPU scaled_dot_product_attention (flash kernel) runs at 40% of the explicit form's speed at ViT
        // sizes (ViT-S/16, batch 32, bf16: 15 vs 6 ms forward, 56 vs 25 ms with backward; docs/performance.md); on
        // CUDA the fused kernel wins. Scaling q before the product scales N·d values instead of N·N.
        if (x.device_type == DeviceType.CPU || AttentionCapture is not null)
        {
            var probs = functional.softmax(parts[0].mul(1.0 / Math.Sqrt(c / numHeads)).matmul(parts[1].transpose(-2, -1)), -1);
            AttentionCapture?.Add(probs.DetachFromDisposeScope());
            o = probs.matmul(parts[2]);
        }
        else o = functional.scaled_dot_product_attention(parts[0], parts[1], parts[2]);
        return proj.call(o.transpose(1, 2).reshape(b, n, c)).MoveToOuterDisposeScope();
    }
}

public sealed class Mlp : LinearHost
{
    public Module<Tensor, Tensor> fc1;
    public Module<Tensor, Tensor> fc2;

    public Mlp(int dim, int hidden) : base(nameof(Mlp))
    {
        fc1 = Linear(dim, hidden);
        fc2 = Linear(hidden, dim);
        RegisterComponents();
    }

    public override IReadOnlyList<string> LinearNames => ["fc1", "fc2"];

    public override Module<Tensor, Tensor> GetLinear(string name) => name switch
    {
        "fc1" => fc1,
        "fc2" => fc2,
        _ => throw Unknown(name),
    };

    protected override void SetLinear(string name, Module<Tensor, Tensor> module)
    {
        switch (name)
        {
            case "fc1": fc1 = module; break;
            case "fc2": fc2 = module; break;
            default: throw Unknown(name);
        }
    }

    public override Tensor forward(Tensor x)
    {
        using var h = fc1.call(x);
        using var a = functional.gelu(h); // exact (erf) GELU, as timm
        return fc2.call(a);
    }
}

/// <summary>Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)).</summary>
public sealed class Block : Module<Tensor, Tensor>
{
    public readonly LayerNorm norm1;
    public readonly Attention attn;
    public readonly LayerNorm norm2;
    public readonly Mlp mlp;

    public Block(VitConfig cfg) : base(nameof(Block))
    {
        norm1 = LayerNorm(cfg.EmbedDim, eps: cfg.LayerNormEps);
        attn = new Attention(cfg.EmbedDim, cfg.NumHeads, cfg.QkvBias);
        norm2 = LayerNorm(cfg.EmbedDim, eps: cfg.LayerNormEps);
        mlp = new Mlp(cfg.EmbedDim, cfg.MlpHidden);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = x + attn.call(norm1.call(x));
        return (h + mlp.call(norm2.call(h))).MoveToOuterDisposeScope();
    }
}

/// <summary>timm's VisionTransformer with a class token and learned absolute position embedding.</summary>
public sealed class VisionTransformer : Module<Tensor, Tensor>
{
    public readonly PatchEmbed patch_embed;
    public readonly Parameter cls_token;
    public readonly Parameter pos_embed;
    public readonly ModuleList<Block> blocks;
    public readonly Module<Tensor, Tensor> norm;
    public readonly Module<Tensor, Tensor> fc_norm;
    public readonly Module<Tensor, Tensor> head;

    public VitConfig Config { get; }

    public VisionTransformer(VitConfig config) : base(nameof(VisionTransformer))
    {
        Config = config.Validate();
        patch_embed = new PatchEmbed(config.InChans, config.EmbedDim, config.PatchSize);
        cls_token = new Parameter(zeros(1, 1, config.EmbedDim));
        pos_embed = new Parameter(zeros(1, config.NumPatches + 1, config.EmbedDim));
        blocks = new ModuleList<Block>(Enumerable.Range(0, config.Depth).Select(_ => new Block(config)).ToArray());
        // timm: global-average-pool models normalise after pooling (fc_norm) and have no final norm.
        bool avg = config.GlobalPool == GlobalPool.Avg;
        norm = avg ? Identity() : LayerNorm(config.EmbedDim, eps: config.LayerNormEps);
        fc_norm = avg ? LayerNorm(config.EmbedDim, eps: config.LayerNormEps) : Identity();
        head = config.NumClasses > 0 ? Linear(config.EmbedDim, config.NumClasses) : Identity();
        RegisterComponents();
    }

    /// <summary>Patch tokens with the class token prepended and position embedding added: [B, 1+N, D].</summary>
    public Tensor Embed(Tensor images)
    {
        using var scope = NewDisposeScope();
        var x = patch_embed.call(images);
        var cls = cls_token.expand(x.shape[0], -1, -1);
        return (cat([cls, x], 1) + pos_embed).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Output tokens of the last block, before the final norm: [B, 1+N, D]. When <paramref name="blockOutputs"/>
    /// is given, every block's output is appended to it (the last one is the returned tensor itself).
    /// </summary>
    public Tensor ForwardTokens(Tensor images, List<Tensor>? blockOutputs = null)
    {
        var x = Embed(images);
        foreach (var block in blocks)
        {
            var next = block.call(x);
            if (blockOutputs is null) x.Dispose();
            else blockOutputs.Add(next);
            x = next;
        }
        return x;
    }

    /// <summary>
    /// Every block's attention probabilities for <paramref name="images"/>, in block order: [B, heads, 1+N, 1+N] each,
    /// softmax(q kᵀ / √head_dim) from each block's own qkv map (LoRA adapters included). The caller disposes them.
    /// </summary>
    public List<Tensor> ForwardAttention(Tensor images)
    {
        var captured = new List<Tensor>(blocks.Count);
        foreach (var block in blocks) block.attn.AttentionCapture = captured;
        try
        {
            using var scope = NewDisposeScope();
            ForwardTokens(images);
            return captured;
        }
        catch
        {
            foreach (var t in captured) t.Dispose();
            throw;
        }
        finally
        {
            foreach (var block in blocks) block.attn.AttentionCapture = null;
        }
    }

    /// <summary>The final-norm output of all tokens (timm's forward_features).</summary>
    public Tensor NormTokens(Tensor tokens) => norm.call(tokens);

    /// <summary>
    /// The pooled feature from last-block tokens, as timm's forward_head(pre_logits=True): final norm, then the
    /// class token (<see cref="GlobalPool.Token"/>) or the mean of patch tokens (<see cref="GlobalPool.Avg"/>), then fc_norm.
    /// </summary>
    public Tensor Pool(Tensor tokens, GlobalPool? pool = null)
    {
        using var scope = NewDisposeScope();
        var h = norm.call(tokens);
        var pooled = (pool ?? Config.GlobalPool) == GlobalPool.Token ? h[.., 0] : h[.., 1..].mean([1]);
        return fc_norm.call(pooled).MoveToOuterDisposeScope();
    }

    /// <summary>Logits (or the pooled feature when the model has no head).</summary>
    public override Tensor forward(Tensor images)
    {
        using var scope = NewDisposeScope();
        return head.call(Pool(ForwardTokens(images))).MoveToOuterDisposeScope();
    }

    public bool HasHead => Config.NumClasses > 0;
}
