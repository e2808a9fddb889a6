using System.Runtime.InteropServices;
using WeCoLoRA.Benchmarking;
using WeCoLoRA.Distillation;
using WeCoLoRA.Models;
using WeCoLoRA.Runtime;
using WeCoLoRA.Tests.Cli;
using static TorchSharp.torch;

namespace WeCoLoRA.Tests.Runtime;

/// <summary>glibc's counters are process-wide, so this runs in the collection that runs alone.</summary>
[Collection(nameof(ConsoleCollection))]
public sealed class NativeHeapTests
{
    [StructLayout(LayoutKind.Sequential)]
    struct MallInfo2
    {
        public nuint Arena, Ordblks, Smblks, Hblks, Hblkhd, Usmblks, Fsmblks, Uordblks, Fordblks, Keepcost;
    }

    [DllImport("libc.so.6")]
    static extern MallInfo2 mallinfo2();

    /// <summary>
    /// A 32 MiB tensor is above glibc's largest default mmap threshold: by default it gets its own mapping (hblkhd grows
    /// by its size), which is unmapped on free and faulted in again next time. Retained, it comes from the heap.
    /// </summary>
    [Fact]
    public void Large_tensors_come_from_the_heap_and_not_from_fresh_mappings()
    {
        Assert.True(NativeHeap.RetainFreedMemory(), "mallopt was not applied, but this machine's C library is glibc");
        ulong mappedBefore = mallinfo2().Hblkhd;
        using var t = empty(8 << 20); // 32 MiB of fp32
        ulong mappedDuring = mallinfo2().Hblkhd;
        Assert.True(mappedDuring < mappedBefore + (16 << 20), $"glibc mapped {mappedDuring - mappedBefore} bytes for a 32 MiB tensor");
    }

    /// <summary>
    /// Lanes train on threads other than the first, whose 64 MiB heaps glibc unmaps as soon as they empty, so each step
    /// would fault its activations in again (8,000-15,000 faults a step here without the top pad, under 2,000 with it).
    /// </summary>
    [Fact]
    public void Training_lanes_reuse_their_memory_from_step_to_step()
    {
        Assert.True(NativeHeap.RetainFreedMemory());
        var config = VitPresets.Get("vit_small_patch16_224");
        var teacher = new VisionTransformer(config);
        foreach (var p in teacher.parameters()) p.requires_grad = false;
        var settings = new DistillSettings { Teacher = "", Data = "", Out = "", Rank = 8 };
        var student = Distiller.BuildStudent(teacher, settings, forTraining: true);
        using var lanes = new TorchLanes(2, 1);
        var objective = new DistillationObjective(teacher, student, settings.Method, settings.Align, Distiller.KeptBlocks(settings, config.Depth), lanes);
        using var images = randn([8, 3, 224, 224], generator: new Generator(0));
        long faults = 0;
        for (int i = 0; i < 4; i++)
        {
            if (i == 2) faults = -SystemStats.MinorFaults()!.Value;
            objective.Step(images);
        }
        faults += SystemStats.MinorFaults()!.Value;
        Assert.True(faults / 2 < 4000, $"{faults / 2} page faults per step: the lanes' freed memory went back to the OS");
    }
}
