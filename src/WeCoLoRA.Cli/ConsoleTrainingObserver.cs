using System.Diagnostics;
using Spectre.Console;
using WeCoLoRA.Distillation;

namespace WeCoLoRA.Cli;

/// <summary>Progress of a training run (distill, pretrain): a live line on a terminal; one plain line per step (and per checkpoint) otherwise.</summary>
sealed class ConsoleTrainingObserver : IDistillObserver
{
    readonly bool live = !Console.IsErrorRedirected;
    readonly IAnsiConsole console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
    readonly Stopwatch clock = new();
    long totalSteps, startStep;

    public void OnStart(int epochs, int stepsPerEpoch, int startEpoch, int images)
    {
        totalSteps = (long)epochs * stepsPerEpoch;
        startStep = (long)startEpoch * stepsPerEpoch;
        clock.Restart();
        Console.Error.WriteLine($"wecolora: {images} images, {stepsPerEpoch} steps per epoch, epochs {startEpoch + 1}..{epochs}");
    }

    public void OnStep(StepMetrics m)
    {
        long done = m.Step - startStep, left = totalSteps - m.Step;
        var eta = done > 0 ? TimeSpan.FromSeconds(clock.Elapsed.TotalSeconds / done * left) : TimeSpan.Zero;
        var line = $"epoch {m.Epoch + 1} step {m.Step}/{totalSteps} loss {m.Loss:F5} lr {m.Lr:E2} {m.ImagesPerSecond:F1} img/s ETA {eta:hh\\:mm\\:ss}";
        if (live)
        {
            int width = 24, filled = totalSteps == 0 ? width : (int)(width * m.Step / totalSteps);
            console.Markup($"\r[green]{new string('█', filled)}[/][grey]{new string('░', width - filled)}[/] {Markup.Escape(line)}  ");
        }
        else
        {
            Console.Error.WriteLine(line);
        }
    }

    public void OnCheckpoint(CheckpointState state, string path)
    {
        if (live) Console.Error.WriteLine();
        Console.Error.WriteLine(state.BatchesDone == 0
            ? $"wecolora: epoch {state.Epoch} done, checkpoint {path}"
            : $"wecolora: checkpoint {path} (epoch {state.Epoch + 1}, batch {state.BatchesDone})");
    }

    public void OnNote(string message) => Console.Error.WriteLine($"wecolora: {message}");
}
