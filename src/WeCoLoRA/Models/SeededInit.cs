using static TorchSharp.torch;

namespace WeCoLoRA.Models;

/// <summary>
/// PyTorch's default layer initialisations drawn from an explicit generator. The global generator is shared by every
/// thread of the process, so a run seeded through it repeats only when nothing else draws from it meanwhile.
/// </summary>
public static class SeededInit
{
    /// <summary>kaiming_uniform_(a = √5), as nn.Linear, nn.Conv2d and PEFT's lora_A use: U(±1/√fan_in).</summary>
    public static void KaimingUniformA5(Tensor weight, Generator generator)
    {
        using var _ = no_grad();
        weight.uniform_(-Bound(weight), Bound(weight), generator);
    }

    /// <summary>reset_parameters() of nn.Linear and nn.Conv2d: the weight as above, the bias U(±1/√fan_in).</summary>
    public static void ResetParameters(Tensor weight, Tensor? bias, Generator generator)
    {
        KaimingUniformA5(weight, generator);
        using var _ = no_grad();
        bias?.uniform_(-Bound(weight), Bound(weight), generator);
    }

    static double Bound(Tensor weight) => 1 / Math.Sqrt(weight.numel() / weight.shape[0]);
}
