using System.Runtime.InteropServices;

namespace WeCoLoRA.Runtime;

/// <summary>
/// The C heap libtorch allocates tensors from. glibc serves blocks above its mmap threshold (128 KiB to 32 MiB) with a
/// fresh mmap and unmaps them on free, so every step's activations are page-faulted in and zeroed by the kernel again:
/// on ViT-S/16 bf16 that was 0.45 s of system time per 1.6 s step. Keeping freed memory in the heap removes it (10% faster
/// steps at about the same peak RSS; docs/performance.md). PyTorch users get the same effect from jemalloc or tcmalloc.
/// Threads other than the process's first (the training lanes) allocate from 64 MiB heaps of their own, which glibc unmaps
/// whenever one empties unless the top pad covers a whole heap: with the pad, ViT-B/16 bf16 with two lanes faults 10,000
/// pages a step instead of 40,000. Blocks over 64 MiB on those threads are still mapped afresh.
/// </summary>
public static class NativeHeap
{
    const int M_TRIM_THRESHOLD = -1, M_TOP_PAD = -2, M_MMAP_MAX = -4;
    static bool? applied;

    /// <summary>
    /// Serves all tensor memory from the heap and never returns freed memory to the OS, so steady-state training reuses
    /// pages instead of faulting them in. Process-wide and idempotent; false (defaults kept) where the C library is not glibc.
    /// </summary>
    public static bool RetainFreedMemory()
    {
        if (applied is { } known) return known;
        try
        {
            applied = OperatingSystem.IsLinux() && mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, int.MaxValue) == 1 && mallopt(M_TOP_PAD, 64 << 20) == 1;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) // not glibc
        {
            applied = false;
        }
        return applied.Value;
    }

    [DllImport("libc.so.6", EntryPoint = "mallopt")]
    static extern int mallopt(int param, int value);
}
