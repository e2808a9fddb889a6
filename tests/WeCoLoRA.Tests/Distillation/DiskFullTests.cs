using System.Diagnostics;
using WeCoLoRA.Distillation;

namespace WeCoLoRA.Tests.Distillation;

/// <summary>A run whose disk fills up: a clear error, the previous checkpoint intact and resumable.</summary>
public sealed class DiskFullTests
{
    sealed class FillDiskAfterFirstCheckpoint(string dir) : IDistillObserver
    {
        public void OnStart(int epochs, int stepsPerEpoch, int startEpoch, int images) { }
        public void OnStep(StepMetrics m) { }
        public void OnNote(string message) { }
        public void OnCheckpoint(CheckpointState state, string path)
        {
            try
            {
                using var f = File.OpenWrite(Path.Combine(dir, "filler"));
                var block = new byte[4096];
                while (true) f.Write(block);
            }
            catch (IOException) { } // the file system is full now
        }
    }

    static bool Run(string file, params string[] args)
    {
        using var p = Process.Start(new ProcessStartInfo(file, args) { RedirectStandardError = true })!;
        p.WaitForExit();
        return p.ExitCode == 0;
    }

    [Fact]
    public void Disk_full_while_checkpointing_keeps_the_previous_checkpoint()
    {
        // A 2 MiB tmpfs is the disk; mounting needs root (CI runs as root).
        var mount = Fixture.TempDir();
        if (!Run("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mount))
        {
            Assert.True(Environment.UserName != "root", "mounting a tmpfs failed although running as root"); // only non-root may skip
            return;
        }
        try
        {
            var run = Path.Combine(mount, "run");
            var data = Fixture.Path("models", "images");
            var s = new DistillSettings { Teacher = Fixture.Path("models", "timm_hub"), Data = data, Out = run, Epochs = 3, BatchSize = 2, Rank = 4 };
            var e = Assert.Throws<IOException>(() => new Distiller(s, new FillDiskAfterFirstCheckpoint(mount)).Run());
            Assert.Contains("writing checkpoint", e.Message);
            Assert.Contains("step-00000002", e.Message); // the previous one, named as intact
            var folder = new RunFolder(run);
            Assert.EndsWith("step-00000002", folder.LatestCheckpoint());
            Assert.Empty(Directory.GetDirectories(folder.CheckpointsDir, "*.tmp"));

            File.Delete(Path.Combine(mount, "filler"));
            new Distiller(s).Run(resume: true);
            Assert.True(Directory.Exists(folder.StudentDir));
        }
        finally
        {
            Run("umount", mount);
        }
    }
}
