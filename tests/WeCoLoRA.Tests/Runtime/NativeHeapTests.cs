using System.Diagnostics;
using System.Text.Json.Nodes;
using WeCoLoRA.Runtime;
using WeCoLoRA.Tests.Cli;

namespace WeCoLoRA.Tests.Runtime;

[Collection(nameof(ConsoleCollection))]
public sealed class NativeHeapTests
{
    [Fact]
    public void Glibc_takes_the_setting()
    {
        Assert.True(NativeHeap.RetainFreedMemory(), "mallopt was not applied, but this machine's C library is glibc");
    }

    /// <summary>
    /// In its own process, where training runs on the first thread as in the CLI: a ViT-Ti step at batch 8 faulted in
    /// about 7,000 pages with glibc's defaults and about 800 with freed memory retained.
    /// </summary>
    [Fact]
    public async Task Bench_steps_reuse_memory_instead_of_faulting_it_in()
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "WeCoLoRA.Cli.dll"), "bench", "--model", "vit_tiny_patch16_224",
                     "--batch", "8", "--steps", "3", "--warmup", "2", "--no-peak", "--json" })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        var stdout = await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync();
        Assert.True(p.ExitCode == 0, await stderr);
        double faults = JsonNode.Parse(stdout)!["page_faults_per_step"]!.GetValue<double>();
        Assert.True(faults < 2000, $"{faults} page faults per step: freed tensor memory went back to the OS");
    }
}
