using TorchSharp;

namespace WeCoLoRA.Checkpoints;

/// <summary>Moves raw bytes between streams and CPU tensors in bounded chunks (no whole-file buffers,
/// and no 2 GiB span limit: each chunk is a narrow view of the flattened tensor).</summary>
internal static class TensorBytes
{
    private const long ChunkBytes = 64L << 20;

    /// <summary>Fills the contiguous CPU tensor <paramref name="t"/> with exactly its byte size read from <paramref name="s"/>.</summary>
    public static void ReadInto(torch.Tensor t, Stream s, string file, string what)
    {
        long done = 0;
        foreach (var part in Chunks(t))
        {
            using var _ = part;
            var span = part.bytes;
            int total = 0;
            while (total < span.Length)
            {
                int got = s.Read(span[total..]);
                if (got == 0)
                {
                    throw new CheckpointException(
                        $"'{file}': data of {what} ends early ({done + total} of {t.numel() * t.element_size()} bytes); the file is truncated, download or save it again");
                }
                total += got;
            }
            done += total;
        }
    }

    /// <summary>Writes the bytes of the contiguous CPU tensor <paramref name="t"/> to <paramref name="s"/>.</summary>
    public static void WriteFrom(torch.Tensor t, Stream s)
    {
        foreach (var part in Chunks(t))
        {
            using var _ = part;
            s.Write(part.bytes);
        }
    }

    /// <summary>Views of at most <see cref="ChunkBytes"/> bytes covering <paramref name="t"/> in order (no 2 GB span limit).</summary>
    static IEnumerable<torch.Tensor> Chunks(torch.Tensor t)
    {
        long numel = t.numel();
        if (numel == 0) yield break;
        long perChunk = Math.Max(1, ChunkBytes / t.element_size());
        using var flat = t.view(-1);
        for (long start = 0; start < numel; start += perChunk)
            yield return flat.narrow(0, start, Math.Min(perChunk, numel - start));
    }
}
