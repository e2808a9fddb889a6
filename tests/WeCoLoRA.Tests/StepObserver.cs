using WeCoLoRA.Distillation;

namespace WeCoLoRA.Tests;

/// <summary>A training observer that acts on steps (simulated kills and interrupts at a chosen step) and keeps the notes.</summary>
sealed class StepObserver(Action<StepMetrics>? onStep = null) : IDistillObserver
{
    public List<string> Notes { get; } = [];
    public void OnStart(int epochs, int stepsPerEpoch, int startEpoch, int images) { }
    public void OnStep(StepMetrics m) => onStep?.Invoke(m);
    public void OnCheckpoint(CheckpointState state, string path) { }
    public void OnNote(string message) => Notes.Add(message);

    /// <summary>Throws at <paramref name="step"/>, after it was logged, as a kill between two steps would leave things.</summary>
    public static StepObserver KillAfter(long step) =>
        new(m => { if (m.Step == step) throw new OperationCanceledException("simulated kill"); });

    /// <summary>Requests an interrupt at <paramref name="step"/>, as SIGINT would.</summary>
    public static StepObserver CancelAt(long step, CancellationTokenSource cts) =>
        new(m => { if (m.Step == step) cts.Cancel(); });
}
