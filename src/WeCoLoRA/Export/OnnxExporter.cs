using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp.Modules;
using WeCoLoRA.Checkpoints;
using WeCoLoRA.Lora;
using WeCoLoRA.Models;
using static TorchSharp.torch;

namespace WeCoLoRA.Export;

/// <summary>
/// Writes a <see cref="VisionTransformer"/> as a self-contained ONNX model built from standard ops only (opset 17):
/// input <c>pixel_values [N, C, H, W]</c> (float32, dynamic batch "N"), outputs <c>features [N, D]</c> (the pooled
/// feature of <see cref="VisionTransformer.Pool"/>) and, when the model has a head, <c>logits [N, classes]</c>.
/// </summary>
public static class OnnxExporter
{
    public const int Opset = 17;
    /// <summary>IR version 8 is the one ONNX 1.12 pairs with opset 17.</summary>
    public const int IrVersion = 8;
    public const string InputName = "pixel_values";
    public const string FeaturesName = "features";
    public const string LogitsName = "logits";
    public const string ModelFileName = "model.onnx";
    public const string ConfigFileName = "config.json";

    /// <summary>
    /// Writes the model to <paramref name="path"/> (atomically). With <paramref name="fp16"/> the weights and the compute are
    /// float16 (LayerNormalization accumulates in float32) while the graph's input and outputs stay float32 (Cast nodes).
    /// LoRA adapters that are still unmerged are folded into the exported weights; the model itself is not changed.
    /// Throws <see cref="ArgumentException"/> when the file would pass protobuf's 2 GiB limit.
    /// </summary>
    public static void Export(VisionTransformer model, string path, bool fp16 = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var graph = Build(model, fp16);
        var version = typeof(OnnxExporter).Assembly.GetName().Version?.ToString() ?? "0";
        graph.Save(path, model.Config.Architecture, IrVersion, Opset, version);
    }

    /// <summary>
    /// Writes <c>model.onnx</c> and, beside it, the timm-style <c>config.json</c> (<see cref="ConfigFiles.ToTimmJson"/>)
    /// that carries the preprocessing (input size, mean/std, crop_pct, interpolation) for inference.
    /// <paramref name="labelNames"/>, when given, are stored as pretrained_cfg.label_names. Returns the .onnx path.
    /// </summary>
    public static string ExportFolder(VisionTransformer model, string dir, bool fp16 = false, IReadOnlyList<string>? labelNames = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (labelNames is not null && labelNames.Count != model.Config.NumClasses)
            throw new ArgumentException($"{labelNames.Count} label names given for a model with {model.Config.NumClasses} classes");
        Directory.CreateDirectory(dir);
        var path = Path.Combine(dir, ModelFileName);
        Export(model, path, fp16);
        var json = ConfigFiles.ToTimmJson(model.Config);
        if (labelNames is not null && json["pretrained_cfg"] is JsonObject pre)
            pre["label_names"] = new JsonArray(labelNames.Select(n => (JsonNode)JsonValue.Create(n)).ToArray());
        File.WriteAllText(Path.Combine(dir, ConfigFileName), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        return path;
    }

    internal static OnnxGraph Build(VisionTransformer model, bool fp16)
    {
        var cfg = model.Config;
        var g = new OnnxGraph(fp16 ? OnnxGraph.Float16 : OnnxGraph.Float32);
        try
        {
            using var _ = no_grad();
            long dim = cfg.EmbedDim, heads = cfg.NumHeads, headDim = cfg.HeadDim;
            g.Input(InputName, OnnxGraph.Float32, "N", (long)cfg.InChans, (long)cfg.ImgSize, (long)cfg.ImgSize);
            var x = fp16 ? g.Node("Cast", "pixel_values.fp16", [InputName], OnnxAttr.Int("to", OnnxGraph.Float16)) : InputName;

            // Patch embedding: Conv (kernel = stride = patch) → [N, D, g, g] → [N, D, P] → [N, P, D].
            var conv = model.patch_embed.proj;
            x = g.Node("Conv", "patch_embed.proj", [x, g.Weight("patch_embed.proj.weight", conv.weight!), g.Weight("patch_embed.proj.bias", conv.bias!)],
                OnnxAttr.IntList("kernel_shape", cfg.PatchSize, cfg.PatchSize), OnnxAttr.IntList("strides", cfg.PatchSize, cfg.PatchSize));
            x = g.Node("Reshape", "patch_embed.flatten", [x, g.Int64s("shape.patches", [0, dim, -1])]);
            x = g.Node("Transpose", "patch_embed.tokens", [x], OnnxAttr.IntList("perm", 0, 2, 1));

            // Class token expanded to the batch: Expand(cls [1, 1, D], [N, 1, D]) with N read off the input's shape.
            var batch = g.Node("Gather", "batch", [g.Node("Shape", "input.shape", [InputName]), g.Int64s("index.first", [0])], OnnxAttr.Int("axis", 0));
            var clsShape = g.Node("Concat", "cls_token.shape", [batch, g.Int64s("shape.one_token", [1, dim])], OnnxAttr.Int("axis", 0));
            var cls = g.Node("Expand", "cls_token.expanded", [g.Weight("cls_token", model.cls_token), clsShape]);
            x = g.Node("Concat", "tokens", [cls, x], OnnxAttr.Int("axis", 1));
            x = g.Node("Add", "embed", [x, g.Weight("pos_embed", model.pos_embed)]);

            var shapeHeads = g.Int64s("shape.heads", [0, 0, heads, headDim]);
            var shapeTokens = g.Int64s("shape.tokens", [0, 0, dim]);
            var scale = g.Scalar("attn.scale", (float)(1 / Math.Sqrt(headDim)));
            var invSqrt2 = g.Scalar("gelu.inv_sqrt2", (float)(1 / Math.Sqrt(2)));
            var one = g.Scalar("gelu.one", 1f);
            var half = g.Scalar("gelu.half", 0.5f);
            for (int i = 0; i < model.blocks.Count; i++)
            {
                var block = model.blocks[i];
                var p = $"blocks.{i}";
                // x + attn(norm1(x)): q, k, v as thirds of the fused qkv, heads split off the channels.
                var h = LayerNorm(g, block.norm1, $"{p}.norm1", x);
                h = Linear(g, block.attn.qkv, $"{p}.attn.qkv", h);
                var qkv = g.Nodes("Split", [$"{p}.attn.q", $"{p}.attn.k", $"{p}.attn.v"], [h], OnnxAttr.Int("axis", 2));
                var q = g.Node("Transpose", $"{p}.attn.q.heads", [g.Node("Reshape", $"{p}.attn.q.split", [qkv[0], shapeHeads])], OnnxAttr.IntList("perm", 0, 2, 1, 3));
                var kT = g.Node("Transpose", $"{p}.attn.k.heads", [g.Node("Reshape", $"{p}.attn.k.split", [qkv[1], shapeHeads])], OnnxAttr.IntList("perm", 0, 2, 3, 1));
                var v = g.Node("Transpose", $"{p}.attn.v.heads", [g.Node("Reshape", $"{p}.attn.v.split", [qkv[2], shapeHeads])], OnnxAttr.IntList("perm", 0, 2, 1, 3));
                var scores = g.Node("Mul", $"{p}.attn.scores", [g.Node("MatMul", $"{p}.attn.qk", [q, kT]), scale]);
                var attn = g.Node("Softmax", $"{p}.attn.softmax", [scores], OnnxAttr.Int("axis", -1));
                var o = g.Node("MatMul", $"{p}.attn.av", [attn, v]);
                o = g.Node("Transpose", $"{p}.attn.merge", [o], OnnxAttr.IntList("perm", 0, 2, 1, 3));
                o = g.Node("Reshape", $"{p}.attn.out", [o, shapeTokens]);
                o = Linear(g, block.attn.proj, $"{p}.attn.proj", o);
                x = g.Node("Add", $"{p}.residual1", [x, o]);

                // x + mlp(norm2(x)) with exact GELU: x · 0.5 · (1 + erf(x / √2)).
                h = LayerNorm(g, block.norm2, $"{p}.norm2", x);
                h = Linear(g, block.mlp.fc1, $"{p}.mlp.fc1", h);
                var erf = g.Node("Erf", $"{p}.mlp.erf", [g.Node("Mul", $"{p}.mlp.scaled", [h, invSqrt2])]);
                var gate = g.Node("Mul", $"{p}.mlp.gate", [g.Node("Add", $"{p}.mlp.erf1", [erf, one]), half]);
                h = g.Node("Mul", $"{p}.mlp.gelu", [h, gate]);
                h = Linear(g, block.mlp.fc2, $"{p}.mlp.fc2", h);
                x = g.Node("Add", $"{p}.residual2", [x, h]);
            }

            // Pool as VisionTransformer.Pool: norm, class token or patch mean, fc_norm.
            if (model.norm is TorchSharp.Modules.LayerNorm) x = LayerNorm(g, model.norm, "norm", x);
            x = cfg.GlobalPool == GlobalPool.Token
                ? g.Node("Gather", "pool.cls", [x, g.Int64s("index.cls", [0], scalar: true)], OnnxAttr.Int("axis", 1))
                : g.Node("ReduceMean", "pool.mean",
                    [g.Node("Slice", "pool.patches", [x, g.Int64s("slice.starts", [1]), g.Int64s("slice.ends", [long.MaxValue]), g.Int64s("slice.axes", [1])])],
                    OnnxAttr.IntList("axes", 1), OnnxAttr.Int("keepdims", 0));
            if (model.fc_norm is TorchSharp.Modules.LayerNorm) x = LayerNorm(g, model.fc_norm, "fc_norm", x);
            Emit(g, x, FeaturesName, fp16);
            g.Output(FeaturesName, OnnxGraph.Float32, "N", dim);

            if (model.HasHead)
            {
                if (model.head is not Linear head)
                    throw new ArgumentException($"head is a {model.head.GetType().Name}; only a plain linear head can be exported");
                var w = g.Weight("head.weight", head.weight!);
                string[] inputs = head.bias is null ? [x, w] : [x, w, g.Weight("head.bias", head.bias)];
                Emit(g, g.Node("Gemm", "head", inputs, OnnxAttr.Int("transB", 1)), LogitsName, fp16);
                g.Output(LogitsName, OnnxGraph.Float32, "N", (long)cfg.NumClasses);
            }
            return g;
        }
        catch
        {
            g.Dispose();
            throw;
        }
    }

    /// <summary>Names a graph output: Cast back to float32 for fp16 graphs, Identity otherwise.</summary>
    static void Emit(OnnxGraph g, string value, string output, bool fp16)
    {
        if (fp16) g.Node("Cast", output, [value], OnnxAttr.Int("to", OnnxGraph.Float32));
        else g.Node("Identity", output, [value]);
    }

    static string LayerNorm(OnnxGraph g, TorchSharp.torch.nn.Module<Tensor, Tensor> module, string name, string x)
    {
        if (module is not TorchSharp.Modules.LayerNorm ln)
            throw new ArgumentException($"{name} is a {module.GetType().Name}, not a LayerNorm");
        // The module's own eps (config.LayerNormEps); stash_type 1 (the default) keeps mean/variance in float32 under fp16.
        return g.Node("LayerNormalization", name, [x, g.Weight($"{name}.weight", ln.weight!), g.Weight($"{name}.bias", ln.bias!)],
            OnnxAttr.Int("axis", -1), OnnxAttr.Float("epsilon", (float)Epsilon(ln)));
    }

    static double Epsilon(TorchSharp.Modules.LayerNorm ln) => ln.eps;

    /// <summary>y = x Wᵀ + b as MatMul (weight stored transposed, [in, out]) and Add; unmerged LoRA folded into W.</summary>
    static string Linear(OnnxGraph g, TorchSharp.torch.nn.Module<Tensor, Tensor> module, string name, string x)
    {
        var (weight, bias) = LinearWeights(module, name);
        using (weight)
        {
            using var wT = weight.t();
            var y = g.Node("MatMul", bias is null ? name : $"{name}.matmul", [x, g.Weight($"{name}.weight", wT)]);
            return bias is null ? y : g.Node("Add", name, [y, g.Weight($"{name}.bias", bias)]);
        }
    }

    static (Tensor Weight, Tensor? Bias) LinearWeights(TorchSharp.torch.nn.Module<Tensor, Tensor> module, string name)
    {
        switch (module)
        {
            case Linear l:
                return (l.weight!.detach(), l.bias);
            case LoraLinear lora:
                var w = lora.base_layer.weight!.detach();
                if (lora.Merged) return (w, lora.base_layer.bias);
                using (var delta = lora.DeltaWeight())
                    return (w.to(float32) + delta.to(float32), lora.base_layer.bias);
            default:
                throw new ArgumentException($"{name} is a {module.GetType().Name}; only linear maps (with or without LoRA) can be exported");
        }
    }
}
