using System.Text.Json.Serialization;
using static TorchSharp.torch;

namespace WeCoLoRA.Distillation;

/// <summary>Where <see cref="TeacherCache"/> keeps the teacher's targets of a <c>--no-augment</c> run.</summary>
public enum TeacherCacheMode
{
    /// <summary>In memory when the targets take at most a quarter of the memory available, else on disk.</summary>
    [JsonStringEnumMemberName("auto")]
    Auto,
    [JsonStringEnumMemberName("memory")]
    Memory,
    /// <summary>A memory-mapped file in the run folder, deleted when the run ends.</summary>
    [JsonStringEnumMemberName("disk")]
    Disk,
    /// <summary>The teacher runs on every batch.</summary>
    [JsonStringEnumMemberName("off")]
    Off,
}

/// <summary>
/// The teacher's targets for every image, computed the first time the image is seen and reused in later epochs. Only
/// valid when an image's input is the same every epoch (no augmentation). The teacher forward is 40% of a step, so
/// epochs after the first get that much faster. Rows are kept in the teacher's dtype, so a reused target equals the
/// recomputed one bit for bit (the targets are that dtype's values widened to fp32).
/// </summary>
public sealed class TeacherCache : IDisposable
{
    readonly Tensor store; // [images, tensors per image, tokens, dim]
    readonly bool[] filled;
    readonly bool blocks;

    /// <summary>The memory-mapped file, or null for an in-memory cache.</summary>
    public string? FilePath { get; }
    public long Bytes { get; }
    /// <summary>Images whose targets came from the cache, and images the teacher ran on.</summary>
    public long Hits { get; private set; }
    public long Misses { get; private set; }

    /// <param name="blockTargets">Whether the targets include every block's output (block alignment).</param>
    public TeacherCache(int images, int depth, long tokens, long dim, bool blockTargets, ScalarType dtype, TeacherCacheMode mode, string diskPath)
    {
        if (mode == TeacherCacheMode.Off) throw new ArgumentException("a teacher cache needs a mode other than off");
        blocks = blockTargets;
        long perImage = 1 + (blockTargets ? depth : 0);
        long elements = images * perImage * tokens * dim;
        Bytes = elements * ElementSize(dtype);
        if (mode == TeacherCacheMode.Auto)
            mode = Bytes <= GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 4 ? TeacherCacheMode.Memory : TeacherCacheMode.Disk;
        long[] shape = [images, perImage, tokens, dim];
        if (mode == TeacherCacheMode.Memory)
            store = empty(shape, dtype);
        else
        {
            using (var f = new FileStream(diskPath, FileMode.Create, FileAccess.ReadWrite)) f.SetLength(Bytes); // sparse until written
            FilePath = diskPath;
            using var flat = from_file(diskPath, shared: true, size: elements, dtype: dtype);
            store = flat.view(shape);
        }
        filled = new bool[images];
    }

    static long ElementSize(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => 4,
        ScalarType.BFloat16 or ScalarType.Float16 => 2,
        _ => throw new ArgumentException($"teacher cache: unsupported dtype {dtype}"),
    };

    /// <summary>The targets of these images when all are cached (fp32, as the teacher forward of <see cref="DistillationObjective.Step"/> gives them), else null.</summary>
    public TeacherTargets? TryGet(int[] indices)
    {
        if (!indices.All(i => filled[i])) return null;
        Hits += indices.Length;
        using var scope = NewDisposeScope();
        var rows = store.index_select(0, tensor(indices.Select(i => (long)i).ToArray())).to(float32); // [b, k, tokens, dim]
        var output = rows.select(1, 0).contiguous();
        var blockList = blocks ? Enumerable.Range(1, (int)rows.shape[1] - 1).Select(k => rows.select(1, k).contiguous().MoveToOuterDisposeScope()).ToList() : null;
        return new TeacherTargets(output.MoveToOuterDisposeScope(), blockList);
    }

    /// <summary>Stores the targets the teacher computed for these images.</summary>
    public void Put(int[] indices, TeacherTargets targets)
    {
        Misses += indices.Length;
        using var scope = NewDisposeScope();
        var parts = new List<Tensor> { targets.Output };
        if (blocks) parts.AddRange(targets.Blocks!);
        var rows = stack(parts, 1).to(store.dtype);
        store.index_copy_(0, tensor(indices.Select(i => (long)i).ToArray()), rows);
        foreach (var i in indices) filled[i] = true;
    }

    public void Dispose()
    {
        store.Dispose();
        if (FilePath is not null) File.Delete(FilePath);
    }
}
