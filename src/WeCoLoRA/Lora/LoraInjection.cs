using TorchSharp.Modules;
using WeCoLoRA.Models;
using static TorchSharp.torch;

namespace WeCoLoRA.Lora;

/// <summary>Which linear maps of every block get adapters, with what rank and alpha (scaling = alpha / rank).</summary>
public sealed record LoraSpec(IReadOnlyList<string> Targets, int Rank, double Alpha)
{
    /// <summary>The six maps of a ViT block: q, k, v (thirds of the fused qkv), attn.proj, mlp.fc1, mlp.fc2.</summary>
    public static readonly IReadOnlyList<string> AllTargets = ["q", "k", "v", "proj", "fc1", "fc2"];
    static readonly string[] QkvParts = ["q", "k", "v"];

    /// <summary>"enhanced" (all six), "qv" (standard LoRA), or a comma list of target names.</summary>
    public static IReadOnlyList<string> ParseTargets(string text)
    {
        var names = text switch
        {
            "enhanced" => AllTargets,
            "qv" => ["q", "v"],
            _ => text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
        };
        foreach (var n in names)
            if (!AllTargets.Contains(n))
                throw new ArgumentException($"LoRA target '{n}' unknown; use enhanced, qv, or a comma list of {string.Join(",", AllTargets)}");
        if (names.Count == 0) throw new ArgumentException("LoRA targets are empty; use enhanced, qv, or a comma list of q,k,v,proj,fc1,fc2");
        return AllTargets.Where(names.Contains).ToList(); // canonical order
    }

    /// <summary>
    /// Wraps the targeted linear maps of every block; only adapter parameters stay trainable. <paramref name="generator"/>
    /// draws the A matrices (null when they are about to be loaded).
    /// </summary>
    public void Inject(VisionTransformer model, Generator? generator = null)
    {
        foreach (var p in model.parameters()) p.requires_grad = false;
        foreach (var block in model.blocks)
        {
            var qkvParts = QkvParts.Where(Targets.Contains).ToList();
            if (qkvParts.Count > 0)
                Wrap(block.attn, "qkv", l => new LoraLinear(l, Rank, Alpha, QkvParts, qkvParts, generator));
            if (Targets.Contains("proj")) Wrap(block.attn, "proj", l => new LoraLinear(l, Rank, Alpha, generator: generator));
            if (Targets.Contains("fc1")) Wrap(block.mlp, "fc1", l => new LoraLinear(l, Rank, Alpha, generator: generator));
            if (Targets.Contains("fc2")) Wrap(block.mlp, "fc2", l => new LoraLinear(l, Rank, Alpha, generator: generator));
        }
    }

    static void Wrap(LinearHost host, string name, Func<Linear, LoraLinear> make)
    {
        if (host.GetLinear(name) is not Linear linear)
            throw new InvalidOperationException($"{name} already carries an adapter");
        host.ReplaceLinear(name, make(linear));
    }

    /// <summary>Every adapter layer of the model, with the host and name it sits under.</summary>
    public static IEnumerable<(LinearHost Host, string Name, LoraLinear Layer)> Adapters(VisionTransformer model) =>
        from block in model.blocks
        from host in new LinearHost[] { block.attn, block.mlp }
        from name in host.LinearNames
        let layer = host.GetLinear(name) as LoraLinear
        where layer is not null
        select (host, name, layer);

    /// <summary>PEFT's merge_and_unload: folds every adapter into its base weight and puts the plain linear back.</summary>
    public static void MergeAndUnload(VisionTransformer model)
    {
        foreach (var (host, name, layer) in Adapters(model).ToList())
        {
            layer.Merge();
            host.ReplaceLinear(name, layer.base_layer);
        }
    }
}
