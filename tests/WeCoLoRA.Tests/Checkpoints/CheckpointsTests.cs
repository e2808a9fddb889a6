using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using System.Text.Json;
using TorchSharp;
using WeCoLoRA.Checkpoints;
using Xunit;

namespace WeCoLoRA.Tests.Checkpoints;

public sealed class CheckpointsTests : IDisposable
{
    private static readonly string FixtureDir = Path.Combine(AppContext.BaseDirectory, "Fixtures", "checkpoints");
    private readonly string _tmp = Directory.CreateTempSubdirectory("wecolora-ckpt-").FullName;

    public void Dispose() => Directory.Delete(_tmp, recursive: true);

    private static string Fixture(string name) => Path.Combine(FixtureDir, name);

    private static JsonElement Golden(string file)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixture("golden.json")));
        return doc.RootElement.GetProperty(file).Clone();
    }

    private static torch.ScalarType FromName(string n) => n switch
    {
        "float32" => torch.ScalarType.Float32,
        "float16" => torch.ScalarType.Float16,
        "bfloat16" => torch.ScalarType.BFloat16,
        "float64" => torch.ScalarType.Float64,
        "int64" => torch.ScalarType.Int64,
        "int32" => torch.ScalarType.Int32,
        "int16" => torch.ScalarType.Int16,
        "int8" => torch.ScalarType.Int8,
        "uint8" => torch.ScalarType.Byte,
        "bool" => torch.ScalarType.Bool,
        _ => throw new ArgumentException(n),
    };

    private static double[] Values(torch.Tensor t)
    {
        if (t.numel() == 0) return []; // TensorAccessor.ToArray throws on empty tensors
        using var d = t.to_type(torch.ScalarType.Float64).contiguous();
        return d.data<double>().ToArray();
    }

    /// <summary>Every tensor has the golden dtype, shape and exact values, and there are no extra keys.</summary>
    private static void AssertMatchesGolden(string file, Dictionary<string, torch.Tensor> sd)
    {
        var golden = Golden(file);
        Assert.Equal(golden.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal),
            sd.Keys.Order(StringComparer.Ordinal));
        foreach (var p in golden.EnumerateObject())
        {
            var t = sd[p.Name];
            Assert.Equal(FromName(p.Value.GetProperty("dtype").GetString()!), t.dtype);
            Assert.Equal(p.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray(), t.shape);
            Assert.Equal(p.Value.GetProperty("values").EnumerateArray().Select(e => e.GetDouble()).ToArray(), Values(t));
            Assert.Equal(DeviceType.CPU, t.device_type);
            Assert.True(t.is_contiguous(), $"{p.Name} is not contiguous");
        }
    }

    private static void DisposeAll(Dictionary<string, torch.Tensor> sd)
    {
        foreach (var t in sd.Values) t.Dispose();
    }

    // ---------- safetensors ----------

    [Fact]
    public void SafeTensors_AllDtypes_ExactValuesAndMetadata()
    {
        var sd = SafeTensors.Load(Fixture("tensors.safetensors"), out var meta);
        try
        {
            AssertMatchesGolden("tensors.safetensors", sd);
            Assert.Equal(new Dictionary<string, string> { ["format"] = "pt", ["note"] = "fixture" }, meta);
        }
        finally { DisposeAll(sd); }
    }

    [Fact]
    public void SafeTensors_ReadMetadata_ReadsHeaderOnly()
    {
        var meta = SafeTensors.ReadMetadata(Fixture("tensors.safetensors"));
        Assert.Equal("pt", meta["format"]);
        Assert.Equal(2, meta.Count);
    }

    [Fact]
    public void SafeTensors_NoMetadata_GivesEmptyMap()
    {
        string path = Path.Combine(_tmp, "nometa.safetensors");
        using (var t = torch.ones(2)) SafeTensors.Save(path, [new("a", t)]);
        Assert.Empty(SafeTensors.ReadMetadata(path));
        var sd = SafeTensors.Load(path, out var meta);
        Assert.Empty(meta);
        DisposeAll(sd);
    }

    [Fact]
    public void SafeTensors_Save_IsByteIdenticalToReferenceLayout()
    {
        // The Python fixture writes the reference layout by hand (compact JSON, __metadata__ first, sorted keys,
        // space padding), so a load/save cycle must reproduce it byte for byte.
        var src = Fixture("tensors.safetensors");
        var sd = SafeTensors.Load(src, out var meta);
        string path = Path.Combine(_tmp, "copy.safetensors");
        try { SafeTensors.Save(path, sd, meta); }
        finally { DisposeAll(sd); }
        Assert.Equal(File.ReadAllBytes(src), File.ReadAllBytes(path));
    }

    [Fact]
    public void SafeTensors_SaveLoad_RoundTrip_MetadataAlignmentAtomicity()
    {
        string path = Path.Combine(_tmp, "rt.safetensors");
        File.WriteAllText(path, "old contents to be replaced");
        using var f32 = torch.arange(6, dtype: torch.ScalarType.Float32).reshape(2, 3);
        using var transposed = f32.t(); // non-contiguous input
        using var bf16 = torch.tensor(new float[] { 1.5f, -2f, 3.25f }).to_type(torch.ScalarType.BFloat16);
        using var i64 = torch.tensor(new long[] { long.MinValue, 0, long.MaxValue });
        using var b = torch.tensor(new[] { true, false });
        using var u8 = torch.tensor(new byte[] { 0, 200 });
        var input = new Dictionary<string, torch.Tensor>
        {
            ["z.f32"] = f32, ["a.t"] = transposed, ["m.bf16"] = bf16, ["i64"] = i64, ["bool"] = b, ["u8"] = u8,
        };
        var meta = new Dictionary<string, string> { ["format"] = "pt", ["ünïcode"] = "välue \"quoted\"" };
        SafeTensors.Save(path, input, meta);

        Assert.False(File.Exists(path + ".tmp"));
        var bytes = File.ReadAllBytes(path);
        long n = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0, n % 8);
        string header = Encoding.UTF8.GetString(bytes, 8, (int)n);
        Assert.StartsWith("{\"__metadata__\":", header);
        int jsonEnd = header.LastIndexOf('}') + 1;
        Assert.True(header.Length - jsonEnd < 8);
        Assert.All(header[jsonEnd..], c => Assert.Equal(' ', c));
        using (var doc = JsonDocument.Parse(header))
        {
            var keys = doc.RootElement.EnumerateObject().Select(p => p.Name).Skip(1).ToList();
            Assert.Equal(keys.Order(StringComparer.Ordinal), keys);
        }

        var back = SafeTensors.Load(path, out var metaBack);
        try
        {
            Assert.Equal(meta, metaBack);
            Assert.Equal(input.Keys.Order(), back.Keys.Order());
            foreach (var (k, t) in input)
            {
                Assert.Equal(t.dtype, back[k].dtype);
                Assert.Equal(t.shape, back[k].shape);
                Assert.Equal(Values(t), Values(back[k]));
            }
        }
        finally { DisposeAll(back); }
    }

    [Fact]
    public void SafeTensors_Save_RejectsReservedAndDuplicateKeys()
    {
        using var t = torch.ones(1);
        string path = Path.Combine(_tmp, "bad.safetensors");
        var ex = Assert.Throws<CheckpointException>(() => SafeTensors.Save(path, [new("__metadata__", t)]));
        Assert.Contains("__metadata__", ex.Message);
        ex = Assert.Throws<CheckpointException>(() => SafeTensors.Save(path, [new("x", t), new("x", t)]));
        Assert.Contains("'x'", ex.Message);
        Assert.False(File.Exists(path));
    }

    /// <summary>Writes a safetensors file with the given raw header text and data length.</summary>
    private string MakeSafetensors(string name, string header, int dataBytes, ulong? declaredLength = null)
    {
        var h = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + h.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, declaredLength ?? (ulong)h.Length);
        h.CopyTo(bytes, 8);
        string path = Path.Combine(_tmp, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static CheckpointException LoadFails(string path)
    {
        var ex = Assert.Throws<CheckpointException>(() => StateDictFile.Load(path));
        Assert.Contains(path, ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
        return ex;
    }

    [Fact]
    public void SafeTensors_TruncatedFile_NamesFileAndKey()
    {
        var src = File.ReadAllBytes(Fixture("tensors.safetensors"));
        string path = Path.Combine(_tmp, "truncated.safetensors");
        File.WriteAllBytes(path, src[..^1]);
        var ex = LoadFails(path);
        Assert.Contains("truncated", ex.Message);
        Assert.Contains("'u8'", ex.Message); // the last tensor in the data section

        File.WriteAllBytes(path, src[..5]);
        Assert.Contains("too short", LoadFails(path).Message);
    }

    [Fact]
    public void SafeTensors_HeaderLengthPastEndOfFile_Refused()
    {
        var path = MakeSafetensors("long.safetensors", "{}", 0, declaredLength: 4096);
        Assert.Contains("header length 4096", LoadFails(path).Message);
        path = MakeSafetensors("huge.safetensors", "{}", 0, declaredLength: ulong.MaxValue);
        Assert.Contains("limit", LoadFails(path).Message);
    }

    [Fact]
    public void SafeTensors_OverlappingOffsets_NamesBothKeys()
    {
        var path = MakeSafetensors("overlap.safetensors",
            """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 12);
        var ex = LoadFails(path);
        Assert.Contains("overlaps", ex.Message);
        Assert.Contains("'a'", ex.Message);
        Assert.Contains("'b'", ex.Message);
    }

    [Fact]
    public void SafeTensors_ByteLengthNotMatchingShape_NamesKey()
    {
        var path = MakeSafetensors("len.safetensors", """{"w":{"dtype":"F16","shape":[3,2],"data_offsets":[0,8]}}""", 8);
        var ex = LoadFails(path);
        Assert.Contains("'w'", ex.Message);
        Assert.Contains("needs 12", ex.Message);
    }

    [Fact]
    public void SafeTensors_UnknownDtype_NamesKeyAndDtype()
    {
        var path = MakeSafetensors("dtype.safetensors", """{"q":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}""", 1);
        var ex = LoadFails(path);
        Assert.Contains("'q'", ex.Message);
        Assert.Contains("F8_E4M3", ex.Message);
    }

    [Fact]
    public void SafeTensors_BadHeaders_Refused()
    {
        Assert.Contains("not valid JSON", LoadFails(MakeSafetensors("json.safetensors", "{\"a\": [1, ", 0)).Message);
        Assert.Contains("not an object", LoadFails(MakeSafetensors("arr.safetensors", "[1, 2]  ", 0)).Message);
        var path = Path.Combine(_tmp, "utf8.safetensors");
        File.WriteAllBytes(path, [2, 0, 0, 0, 0, 0, 0, 0, 0xC3, 0x28]);
        Assert.Contains("UTF-8", LoadFails(path).Message);
        var neg = MakeSafetensors("neg.safetensors", """{"n":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}""", 0);
        Assert.Contains("'n'", LoadFails(neg).Message);
        var big = MakeSafetensors("big.safetensors", """{"o":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0]}}""", 0);
        Assert.Contains("'o'", LoadFails(big).Message);
    }

    // ---------- torch.save zip / pickle ----------

    [Theory]
    [InlineData("state_dict.pth")]
    [InlineData("state_dict.bin")]
    [InlineData("mae.pth")]
    [InlineData("wrapped.pth")]
    [InlineData("views.pth")]
    public void TorchPickle_StateDicts_ExactValues(string file)
    {
        var sd = TorchPickle.LoadStateDict(Fixture(file));
        try { AssertMatchesGolden(file, sd); }
        finally { DisposeAll(sd); }
    }

    [Theory]
    [InlineData("state_dict.bin")]
    [InlineData("tensors.safetensors")]
    public void StateDictFile_DispatchesByContentNotExtension(string file)
    {
        var sd = StateDictFile.Load(Fixture(file));
        try { AssertMatchesGolden(file, sd); }
        finally { DisposeAll(sd); }
    }

    [Fact]
    public void TorchPickle_SharedStorageViews_AreIndependentCopies()
    {
        var sd = TorchPickle.LoadStateDict(Fixture("views.pth"));
        try
        {
            sd["base"].fill_(-1);
            Assert.Equal(new double[] { 5, 6, 9, 10 }, Values(sd["slice"]));
            Assert.Equal(new long[] { 4, 3 }, sd["transposed"].shape);
            Assert.Equal(new long[] { 3, 1 }, sd["transposed"].stride());
            Assert.Equal(new long[] { 3, 1 }, sd["expanded"].stride()); // materialized, no longer stride 0
        }
        finally { DisposeAll(sd); }
    }

    [Theory]
    [InlineData("malicious.pth", "state dict key 'w'")]
    [InlineData("malicious_top.pth", "top-level object")]
    public void TorchPickle_ForeignGlobal_RefusedByName_NothingExecuted(string file, string where)
    {
        string path = Fixture(file);
        var ex = Assert.Throws<CheckpointException>(() => StateDictFile.Load(path));
        Assert.Matches("refusing pickle global '(posix|os)\\.system'", ex.Message);
        Assert.Contains(path, ex.Message);
        Assert.Contains(where, ex.Message);
    }

    /// <summary>Builds a zip with the given entries (name → bytes).</summary>
    private string MakeZip(string name, params (string Entry, byte[] Data)[] entries)
    {
        string path = Path.Combine(_tmp, name);
        using var z = ZipFile.Open(path, ZipArchiveMode.Create);
        foreach (var (e, d) in entries)
        {
            using var s = z.CreateEntry(e, CompressionLevel.NoCompression).Open();
            s.Write(d);
        }
        return path;
    }

    private static (string Entry, byte[] Data)[] FixtureEntries(string file)
    {
        using var z = ZipFile.OpenRead(Fixture(file));
        return z.Entries.Select(e =>
        {
            using var s = e.Open();
            var ms = new MemoryStream();
            s.CopyTo(ms);
            return (e.FullName, ms.ToArray());
        }).ToArray();
    }

    [Fact]
    public void TorchPickle_ZipEntryWithDotDot_Refused()
    {
        var entries = FixtureEntries("views.pth").Append(("views/../../evil", [1, 2, 3])).ToArray();
        var ex = LoadFails(MakeZip("dotdot.pth", entries));
        Assert.Contains("views/../../evil", ex.Message);
        ex = LoadFails(MakeZip("abs.pth", FixtureEntries("views.pth").Append(("/etc/evil", [1])).ToArray()));
        Assert.Contains("/etc/evil", ex.Message);
    }

    [Fact]
    public void TorchPickle_StorageSizeMismatch_NamesEntry()
    {
        var entries = FixtureEntries("views.pth")
            .Select(e => e.Entry == "views/data/0" ? (e.Entry, e.Data[..^4]) : e).ToArray();
        var ex = LoadFails(MakeZip("short.pth", entries));
        Assert.Contains("views/data/0", ex.Message);
        Assert.Contains("44 bytes", ex.Message);
    }

    [Fact]
    public void TorchPickle_UnknownOpcode_NamesOpcodeAndOffset()
    {
        var ex = LoadFails(MakeZip("op.pth", ("a/data.pkl", [0x80, 0x02, 0x7d, 0xff]), ("a/version", "3\n"u8.ToArray())));
        Assert.Contains("offset 3", ex.Message);
        Assert.Contains("0xff", ex.Message);
    }

    [Fact]
    public void TorchPickle_PickledModelUnderModelKey_RefusedByName()
    {
        // {"model": __main__.Net()} as torch.save(model) inside a dict would write it (protocol 2).
        byte[] pkl = [0x80, 0x02, (byte)'}', 0x8c, 5, .. "model"u8, (byte)'c', .. "__main__\nNet\n"u8, (byte)')', 0x81, (byte)'}', (byte)'b', (byte)'s', (byte)'.'];
        var ex = LoadFails(MakeZip("model.pth", ("a/data.pkl", pkl)));
        Assert.Contains("refusing pickle global '__main__.Net'", ex.Message);
        Assert.Contains("entry 'model'", ex.Message);
    }

    [Fact]
    public void TorchPickle_NoStateDictInside_ListsKeys()
    {
        // {"epoch": 3} : pickle protocol 2
        byte[] pkl = [0x80, 0x02, (byte)'}', (byte)'q', 0, 0x8c, 5, .. "epoch"u8, (byte)'K', 3, (byte)'s', (byte)'.'];
        var ex = LoadFails(MakeZip("nosd.pth", ("a/data.pkl", pkl)));
        Assert.Contains("'epoch'", ex.Message);
    }

    [Fact]
    public void StateDictFile_LegacyTorchFormat_ExplainsFix()
    {
        string path = Path.Combine(_tmp, "legacy.pt");
        File.WriteAllBytes(path, [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]);
        Assert.Contains("legacy", LoadFails(path).Message);
    }

    [Fact]
    public void Load_MissingFile_NamesPath()
    {
        LoadFails(Path.Combine(_tmp, "nope.safetensors"));
    }
}
