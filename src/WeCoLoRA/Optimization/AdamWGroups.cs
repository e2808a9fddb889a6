using TorchSharp.Modules;
using static TorchSharp.torch;

namespace WeCoLoRA.Optimization;

/// <summary>AdamW with the MAE/timm parameter groups, shared by distillation and supervised training.</summary>
public static class AdamWGroups
{
    /// <summary>Weight decay applies to matrices only (not biases, norms, the class token or the position embedding).</summary>
    public static bool Decays(string name, Parameter p) => p.dim() >= 2 && name is not ("cls_token" or "pos_embed");

    /// <summary>AdamW over <paramref name="trainable"/>: decayed and non-decayed groups, both at <paramref name="lr"/>.</summary>
    public static OptimizerHelper Create(IReadOnlyList<(string name, Parameter parameter)> trainable, double lr, double weightDecay,
        double beta1 = 0.9, double beta2 = 0.999)
    {
        var groups = new[]
        {
            new AdamW.ParamGroup(trainable.Where(x => Decays(x.name, x.parameter)).Select(x => x.parameter), lr: lr, beta1: beta1, beta2: beta2, weight_decay: weightDecay),
            new AdamW.ParamGroup(trainable.Where(x => !Decays(x.name, x.parameter)).Select(x => x.parameter), lr: lr, beta1: beta1, beta2: beta2, weight_decay: 0),
        }.Where(g => g.Parameters.Any());
        return optim.AdamW(groups, lr: lr, beta1: beta1, beta2: beta2);
    }
}
