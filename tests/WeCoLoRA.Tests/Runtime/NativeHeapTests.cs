using System.Runtime.InteropServices;
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
}
