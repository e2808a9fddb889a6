namespace WeCoLoRA.Distillation;

/// <summary>The release's per-iteration schedule: linear warm-up, then half-cycle cosine down to the minimum.</summary>
public sealed record LrSchedule(double Lr, double MinLr, double WarmupEpochs, double Epochs)
{
    /// <param name="epoch">Fractional epoch: epoch index + iteration / iterations per epoch.</param>
    public double At(double epoch)
    {
        if (epoch < WarmupEpochs) return Lr * epoch / WarmupEpochs;
        double span = Epochs - WarmupEpochs;
        if (span <= 0) return Lr;
        return MinLr + (Lr - MinLr) * 0.5 * (1.0 + Math.Cos(Math.PI * (epoch - WarmupEpochs) / span));
    }
}
