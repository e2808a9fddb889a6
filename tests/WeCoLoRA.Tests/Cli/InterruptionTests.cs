using System.Diagnostics;
using System.Text.Json.Nodes;
using WeCoLoRA.Checkpoints;
using WeCoLoRA.Distillation;

namespace WeCoLoRA.Tests.Cli;

/// <summary>Signals and kill -9 against a real `wecolora distill` child process; resume finishes the run.</summary>
[Collection(nameof(ConsoleCollection))]
public sealed class InterruptionTests
{
    static readonly string Cli = Path.Combine(AppContext.BaseDirectory, "WeCoLoRA.Cli.dll");

    // 12 images, batch 2: 6 steps per epoch; 15 epochs keep the child busy long enough to be interrupted.
    static string[] Args(string data, string run) =>
        ["distill", "--teacher", Fixture.Path("models", "timm_hub"), "--data", data, "--out", run, "--epochs", "15", "--batch-size", "2", "--rank", "4", "--workers", "1"];

    static string MakeData()
    {
        var root = Fixture.TempDir();
        var images = Directory.GetFiles(Fixture.Path("models", "images"), "*.png", SearchOption.AllDirectories).Order().ToArray();
        for (int i = 0; i < 12; i++) File.Copy(images[i % images.Length], Path.Combine(root, $"{i:D2}.png"));
        return root;
    }

    static Process Start(string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true };
        psi.ArgumentList.Add(Cli);
        foreach (var a in args) psi.ArgumentList.Add(a);
        return Process.Start(psi)!;
    }

    static int MetricLines(string run)
    {
        var path = Path.Combine(run, "metrics.jsonl");
        try { return File.Exists(path) ? File.ReadAllLines(path).Length : 0; }
        catch (IOException) { return 0; }
    }

    static void WaitForSteps(Process p, string run, int steps)
    {
        var clock = Stopwatch.StartNew();
        while (MetricLines(run) < steps)
        {
            if (p.HasExited) Assert.Fail("the run ended before it could be interrupted: " + p.StandardError.ReadToEnd());
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), "no progress within 60 s");
            Thread.Sleep(20);
        }
    }

    static void Signal(Process p, string signal) => Process.Start("kill", [$"-{signal}", p.Id.ToString()])!.WaitForExit();

    static void ResumeToTheEnd(string data, string run)
    {
        var (code, _, err) = CliRunner.Run([.. Args(data, run), "--resume"]);
        Assert.True(code == 0, err);
        var steps = File.ReadLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!["step"]!.GetValue<long>()).ToList();
        Assert.Equal(Enumerable.Range(1, 90).Select(i => (long)i), steps); // every step once, in order
        Assert.NotNull(ModelLoader.Load(run).Adapters);
    }

    [Theory]
    [InlineData("INT")]
    [InlineData("TERM")]
    public void A_signal_finishes_the_step_checkpoints_and_prints_the_resume_command(string signal)
    {
        var data = MakeData();
        var run = Path.Combine(Fixture.TempDir(), "run");
        using var p = Start(Args(data, run));
        WaitForSteps(p, run, 3);
        Signal(p, signal);
        var stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 130, $"exit {p.ExitCode}: {stderr[^Math.Min(stderr.Length, 600)..]}");
        Assert.Contains("--resume", stderr);
        Assert.Contains("checkpoint written", stderr);
        var latest = new RunFolder(run).LatestCheckpoint();
        Assert.NotNull(latest);
        Assert.Equal(MetricLines(run), RunFolder.ReadState(latest!).Step); // the checkpoint is at the last logged step
        ResumeToTheEnd(data, run);
    }

    [Fact]
    public void Kill_9_at_any_moment_leaves_a_loadable_checkpoint_and_resume_works()
    {
        var data = MakeData();
        var run = Path.Combine(Fixture.TempDir(), "run");
        using var p = Start(Args(data, run));
        WaitForSteps(p, run, 13); // past two epoch checkpoints
        Signal(p, "KILL");
        p.WaitForExit();
        var latest = new RunFolder(run).LatestCheckpoint();
        Assert.NotNull(latest);
        Assert.NotEmpty(RunFolder.ReadTrainable(latest!));
        ResumeToTheEnd(data, run);
    }

    [Fact]
    public void A_second_signal_exits_at_once_and_the_run_still_resumes()
    {
        var data = MakeData();
        var run = Path.Combine(Fixture.TempDir(), "run");
        using var p = Start(Args(data, run));
        WaitForSteps(p, run, 8);
        Signal(p, "INT");
        Signal(p, "INT");
        Assert.True(p.WaitForExit(30_000));
        Assert.NotEqual(0, p.ExitCode);
        ResumeToTheEnd(data, run);
    }

    [Fact]
    public void A_mid_epoch_interrupt_resumes_to_the_uninterrupted_losses()
    {
        var data = MakeData();
        var full = Path.Combine(Fixture.TempDir(), "full");
        var settings = new DistillSettings { Teacher = Fixture.Path("models", "timm_hub"), Data = data, Out = full, Epochs = 2, BatchSize = 2, Rank = 4, Lr = 1e-2, Workers = 1 };
        new Distiller(settings).Run();
        var cut = Path.Combine(Fixture.TempDir(), "cut");
        using var interrupt = new CancellationTokenSource();
        var e = Assert.Throws<RunInterruptedException>(() => new Distiller(settings with { Out = cut }, StepObserver.CancelAt(4, interrupt)).Run(interrupt: interrupt.Token));
        Assert.Equal(new CheckpointState(0, 4, 4), RunFolder.ReadState(e.Checkpoint));
        new Distiller(settings with { Out = cut }).Run(resume: true);
        Assert.Equal(File.ReadAllLines(Path.Combine(full, "metrics.jsonl")).Select(Loss), File.ReadAllLines(Path.Combine(cut, "metrics.jsonl")).Select(Loss));
    }

    static double Loss(string line) => JsonNode.Parse(line)!["loss"]!.GetValue<double>();
}
