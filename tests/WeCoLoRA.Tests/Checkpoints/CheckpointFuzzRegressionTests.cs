using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using WeCoLoRA.Checkpoints;
using Xunit;

namespace WeCoLoRA.Tests.Checkpoints;

/// <summary>
/// Minimized inputs for bugs found by <see cref="CheckpointFuzzTests"/> (and the bounds added with them). Each input is
/// a seed from Fixtures/checkpoints/fuzz-corpus with one or two fields changed, or a few hand-written bytes; before
/// the fix each ended in something other than a CheckpointException (or in a huge allocation).
/// </summary>
public sealed class CheckpointFuzzRegressionTests : IDisposable
{
    private static readonly string CorpusDir = Path.Combine(AppContext.BaseDirectory, "Fixtures", "checkpoints", "fuzz-corpus");
    private readonly string _tmp = Directory.CreateTempSubdirectory("wecolora-fuzzreg-").FullName;

    public void Dispose() => Directory.Delete(_tmp, recursive: true);

    private string Write(string name, byte[] bytes)
    {
        string path = Path.Combine(_tmp, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static CheckpointException LoadFails(string path, string expected)
    {
        var ex = Assert.Throws<CheckpointException>(() => StateDictFile.Load(path));
        Assert.Contains(path, ex.Message);
        Assert.Contains(expected, ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
        return ex;
    }

    // ---------- safetensors

    private static byte[] SafeTensorsBytes(string headerJson, int dataBytes)
    {
        var h = Encoding.UTF8.GetBytes(headerJson);
        var b = new byte[8 + h.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(b, (ulong)h.Length);
        h.CopyTo(b, 8);
        return b;
    }

    [Fact]
    public void SafeTensors_LoneSurrogateEscapeInKey_Refused()
    {
        // Was InvalidOperationException ("Cannot read invalid UTF-16 JSON text as string") from JsonProperty.Name.
        var path = Write("surrogate.safetensors", SafeTensorsBytes("""{"\udfff\ud800":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 4));
        LoadFails(path, "not valid Unicode");
    }

    [Fact]
    public void SafeTensors_EmptyTensorWithHugeDim_RefusedBeforeTorch()
    {
        // [0, 3, 2^63-1] has no elements, so the byte count (0) matched; torch.empty then threw ExternalException
        // "Stride calculation overflowed".
        var path = Write("huge-empty.safetensors", SafeTensorsBytes("""{"u":{"dtype":"F16","shape":[0,3,9223372036854775807],"data_offsets":[0,0]}}""", 0));
        LoadFails(path, "'u'");
        path = Write("huge-empty2.safetensors", SafeTensorsBytes("""{"u":{"dtype":"F32","shape":[0,4611686018427387904,4],"data_offsets":[0,0]}}""", 0));
        LoadFails(path, "'u'");
    }

    [Fact]
    public void SafeTensors_TooManyDims_Refused()
    {
        string shape = string.Join(",", Enumerable.Repeat("1", 65));
        var path = Write("dims.safetensors", SafeTensorsBytes("{\"u\":{\"dtype\":\"U8\",\"shape\":[" + shape + "],\"data_offsets\":[0,1]}}", 1));
        LoadFails(path, "65 dimensions");
    }

    // ---------- pickle VM

    private string PickleZip(string name, byte[] pkl, params (string Entry, byte[] Data)[] more)
    {
        string path = Path.Combine(_tmp, name);
        using var z = ZipFile.Open(path, ZipArchiveMode.Create);
        foreach (var (e, d) in more.Prepend(("a/data.pkl", pkl)))
        {
            using var s = z.CreateEntry(e, CompressionLevel.NoCompression).Open();
            s.Write(d);
        }
        return path;
    }

    [Theory]
    [InlineData((byte)'X', 0xFFFF_FFFFu)] // BINUNICODE: was OverflowException from checked((int)length)
    [InlineData((byte)'X', 0x8000_0000u)]
    [InlineData((byte)'B', 0xFFFF_FFFFu)] // BINBYTES: same
    [InlineData((byte)'X', 0x7FFF_FFFFu)] // fits an int, still far past the data: refused before allocating
    public void Pickle_LengthPastEndOfData_RefusedBeforeAllocation(byte op, uint length)
    {
        byte[] pkl = [0x80, 0x02, op, (byte)length, (byte)(length >> 8), (byte)(length >> 16), (byte)(length >> 24), (byte)'.'];
        long before = GC.GetAllocatedBytesForCurrentThread();
        LoadFails(PickleZip("len.pth", pkl), "remain");
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 16 << 20);
    }

    [Fact]
    public void Pickle_HugeLong4_RefusedBeforeAllocation()
    {
        byte[] pkl = [0x80, 0x02, 0x8b, 0xFF, 0xFF, 0xFF, 0x7F, (byte)'.'];
        LoadFails(PickleZip("long4.pth", pkl), "2147483647-byte integer");
        pkl = [0x80, 0x02, 0x8b, 0xD0, 0x07, 0, 0, .. new byte[2000], (byte)'.'];
        LoadFails(PickleZip("long4b.pth", pkl), "2000-byte integer");
    }

    private static byte[] Repeat(string pattern, int n, string prefix = "\u0080\u0002", string suffix = ".")
    {
        var b = new byte[prefix.Length + pattern.Length * n + suffix.Length];
        Encoding.Latin1.GetBytes(prefix).CopyTo(b, 0);
        var p = Encoding.Latin1.GetBytes(pattern);
        for (int i = 0; i < n; i++) p.CopyTo(b, prefix.Length + i * p.Length);
        Encoding.Latin1.GetBytes(suffix).CopyTo(b, b.Length - suffix.Length);
        return b;
    }

    [Fact]
    public void Pickle_DeepNestingAndFloods_CleanErrorsNoStackOverflow()
    {
        LoadFails(PickleZip("marks.pth", Repeat("(", 1_000_000)), "MARK");
        LoadFails(PickleZip("stack.pth", Repeat("]", 1_100_000)), "on the stack");
        // A list nested a million deep: the VM is iterative, so this is only a top-level list, refused as such.
        LoadFails(PickleZip("nested.pth", Repeat("]a", 1_000_000, "\u0080\u0002]")), "not a dict of tensors");
        LoadFails(PickleZip("objects.pth", Repeat("N0", (int)PickleVm.MaxObjects + 1)), "builds more than");
    }

    /// <summary>{'w': _rebuild_tensor_v2(storage('0', FloatStorage, numel 0), 0, size, (1,)*n, False, OrderedDict())} at protocol 2.</summary>
    private static byte[] TensorPickle(long[] size)
    {
        var b = new List<byte> { 0x80, 0x02, (byte)'}', (byte)'U', 1, (byte)'w' };
        b.AddRange("ctorch._utils\n_rebuild_tensor_v2\n("u8.ToArray());
        b.AddRange(Encoding.Latin1.GetBytes("(U\u0007storagectorch\nFloatStorage\nU\u00010U\u0003cpuK\u0000tQ"));
        b.AddRange([(byte)'K', 0, (byte)'(']);
        foreach (long d in size) { b.Add(0x8a); b.Add(8); b.AddRange(BitConverter.GetBytes(d)); }
        b.Add((byte)'t');
        b.Add((byte)'(');
        foreach (long _ in size) b.AddRange([(byte)'K', 1]);
        b.Add((byte)'t');
        b.Add(0x89);
        b.AddRange("ccollections\nOrderedDict\n)R"u8.ToArray());
        b.AddRange("tRs."u8.ToArray());
        return [.. b];
    }

    [Fact]
    public void Pickle_EmptyTensorWithHugeDim_RefusedBeforeTorch()
    {
        // Found in safetensors; the pickle reader had the same gap ([0, 2^62, 4] is empty and inside any storage).
        // The sizes are written as LONG1, as torch.save does past 2^31: that the first load succeeds is the
        // regression test for LONG1 values having come out as BigInteger (refused as "not a non-negative integer").
        var sd = StateDictFile.Load(PickleZip("ok.pth", TensorPickle([0, 3]), ("a/data/0", [])));
        Assert.Equal([0L, 3L], sd["w"].shape);
        sd["w"].Dispose();
        LoadFails(PickleZip("huge.pth", TensorPickle([0, 1L << 62, 4]), ("a/data/0", [])), "overflows");
    }

    [Fact]
    public void Pickle_ManyCopiesOfOneStorage_Refused()
    {
        // Two keys each expand one stored float to 2^26 elements: each is within the expansion allowance, together
        // they would copy 512 MiB out of 4 stored bytes.
        LoadFails(Path.Combine(CorpusDir, "expanded_twice.pth"), "would copy");
    }

    // ---------- zip container

    private static byte[] Seed(string name) => File.ReadAllBytes(Path.Combine(CorpusDir, name));

    /// <summary>Overwrites a field of the central directory record (sig PK\1\2) of <paramref name="entry"/>.</summary>
    private static byte[] PatchCentral(byte[] zip, string entry, int field, int width, ulong value)
    {
        var b = (byte[])zip.Clone();
        for (int i = 0; i + 46 <= b.Length; i++)
        {
            if (BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(i)) != 0x02014b50) continue;
            int nameLength = BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(i + 28));
            if (Encoding.UTF8.GetString(b, i + 46, nameLength) != entry) continue;
            for (int j = 0; j < width; j++) b[i + field + j] = (byte)(value >> (8 * j));
            return b;
        }
        throw new ArgumentException($"no central record for {entry}");
    }

    private static byte[] Rezip(byte[] zip, CompressionLevel level)
    {
        var ms = new MemoryStream();
        using (var src = new ZipArchive(new MemoryStream(zip), ZipArchiveMode.Read))
        using (var dst = new ZipArchive(ms, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var e in src.Entries)
            {
                using var i = e.Open();
                using var o = dst.CreateEntry(e.FullName, level).Open();
                i.CopyTo(o);
            }
        }
        return ms.ToArray();
    }

    [Fact]
    public void Zip_CorruptCentralDirectory_Refused()
    {
        // Was InvalidDataException ("Number of entries expected in End Of Central Directory does not correspond...")
        // raised lazily from ZipArchive.Entries.
        var path = Write("extra.pth", PatchCentral(Seed("seed_wrapped.pth"), "seed_wrapped/data.pkl", 30, 2, 0xFFFF));
        LoadFails(path, "zip archive is corrupt");
    }

    [Fact]
    public void Zip_DeclaredPickleSizeFarOverData_RefusedBeforeAllocation()
    {
        // The central directory claimed 700 MiB for a 200-byte stored data.pkl: 700 MiB were allocated up front.
        var path = Write("bomb.pth", PatchCentral(Seed("seed_wrapped.pth"), "seed_wrapped/data.pkl", 24, 4, 0x2bbcae50));
        long before = GC.GetAllocatedBytesForCurrentThread();
        LoadFails(path, "zip bomb");
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 16 << 20);
    }

    [Fact]
    public void Zip_CompressedSizePastEndOfFile_Refused()
    {
        // Was InvalidDataException ("A local file header is corrupt").
        var zip = Rezip(Seed("seed_wrapped.pth"), CompressionLevel.Optimal);
        LoadFails(Write("csize.pth", PatchCentral(zip, "seed_wrapped/data.pkl", 20, 4, 0x8000_0000)), "compressed bytes");
    }

    [Fact]
    public void Zip_StorageEntryUnreadable_Refused()
    {
        // Unknown compression method on a storage entry: was InvalidDataException from TensorBytes.ReadInto.
        LoadFails(Write("method.pth", PatchCentral(Seed("seed_plain.pth"), "seed_plain/data/0", 10, 2, 99)), "zip archive is corrupt");
        // Storage entry's local-header offset pointing into the middle of the file: was InvalidDataException from Materialize.
        LoadFails(Write("offset.pth", PatchCentral(Seed("seed_plain.pth"), "seed_plain/data/0", 42, 4, 0x100)), "zip archive is corrupt");
    }

    [Fact]
    public void Zip_DeflatedEntryMarkedStored_Refused()
    {
        // The pickle's compressed bytes read as stored ones end before the declared size: was EndOfStreamException.
        var zip = Rezip(Seed("seed_views.pth"), CompressionLevel.Optimal);
        LoadFails(Write("stored.pth", PatchCentral(zip, "seed_views/data.pkl", 10, 2, 0)), "seed_views/data.pkl");
    }
}
