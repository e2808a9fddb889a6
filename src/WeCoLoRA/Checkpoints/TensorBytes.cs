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
        long numel = t.numel();
        if (numel == 0) return;
        long elem = t.element_size();
        long perChunk = Math.Max(1, ChunkBytes / elem);
        using var flat = t.view(-1);
        for (long start = 0; start < numel; start += perChunk)
        {
            long n = Math.Min(perChunk, numel - start);
            using var part = flat.narrow(0, start, n);
            var span = part.bytes;
            int total = 0;
            while (total < span.Length)
            {
                int got = s.Read(span[total..]);
                if (got == 0)
                {
                    throw new CheckpointException(
                        $"'{file}': data of {what} ends early ({start * elem + total} of {numel * elem} bytes); the file is truncated, download or save it again");
                }
                total += got;
            }
        }
    }

    /// <summary>Writes the bytes of the contiguous CPU tensor <paramref name="t"/> to <paramref name="s"/>.</summary>
    public static void WriteFrom(torch.Tensor t, Stream s)
    {
        long numel = t.numel();
        if (numel == 0) return;
        long elem = t.element_size();
        long perChunk = Math.Max(1, ChunkBytes / elem);
        using var flat = t.view(-1);
        for (long start = 0; start < numel; start += perChunk)
        {
            long n = Math.Min(perChunk, numel - start);
            using var part = flat.narrow(0, start, n);
            s.Write(part.bytes);
        }
    }
}
