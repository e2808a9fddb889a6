using WeCoLoRA.Distillation;

namespace WeCoLoRA.Tests;

/// <summary>A training observer that only acts on steps: simulated kills and interrupts at a chosen step.</summary>
sealed class StepObserver(Action<StepMetrics> onStep) : IDistillObserver
{
    public void OnStart(int epochs, int stepsPerEpoch, int startEpoch, int images) { }
    public void OnStep(StepMetrics m) => onStep(m);
    public void OnCheckpoint(CheckpointState state, string path) { }
    public void OnNote(string message) { }

    /// <summary>Throws at <paramref name="step"/>, after it was logged, as a kill between two steps would leave things.</summary>
    public static StepObserver KillAfter(long step) =>
        new(m => { if (m.Step == step) throw new OperationCanceledException("simulated kill"); });

    /// <summary>Requests an interrupt at <paramref name="step"/>, as SIGINT would.</summary>
    public static StepObserver CancelAt(long step, CancellationTokenSource cts) =>
        new(m => { if (m.Step == step) cts.Cancel(); });
}
