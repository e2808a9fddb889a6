namespace WeCoLoRA.Optimization;

/// <summary>MAE's <c>util/lr_sched.adjust_learning_rate</c>: linear warm-up, then a half-cycle cosine to the minimum, per iteration.</summary>
public static class LrSchedule
{
    /// <param name="epoch">Fractional epoch: epoch + iteration / iterations per epoch.</param>
    public static double At(double epoch, double lr, double warmupEpochs, double epochs, double minLr = 0)
    {
        if (epoch < warmupEpochs)
            return lr * epoch / warmupEpochs;
        if (epochs <= warmupEpochs)
            return lr;
        return minLr + (lr - minLr) * 0.5 * (1.0 + Math.Cos(Math.PI * (epoch - warmupEpochs) / (epochs - warmupEpochs)));
    }
}
