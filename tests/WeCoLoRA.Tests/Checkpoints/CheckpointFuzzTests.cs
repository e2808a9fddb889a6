// Mutation fuzzing of the checkpoint readers (safetensors and torch.save zips) on the seed corpus in
// Fixtures/checkpoints/fuzz-corpus/ (written by make_corpus.py there). Every mutated file must either load or fail
// with a CheckpointException, within 5 s and without unbounded allocation. See docs/fuzzing.md.
//
// The CI run is 10,000 mutations in all. A long run by hand:
//   WECOLORA_FUZZ_ITERATIONS=1000000 WECOLORA_FUZZ_SEED=7 dotnet test tests/WeCoLoRA.Tests --filter FullyQualifiedName~CheckpointFuzz
// A failure names its seed and case number; rerun only that case with
//   WECOLORA_FUZZ_SEED=<seed> WECOLORA_FUZZ_CASE=<case> dotnet test tests/WeCoLoRA.Tests --filter FullyQualifiedName~CheckpointFuzz
// Failing inputs are also written to $TMPDIR/wecolora-fuzz-failures/ for minimizing.

using System.Buffers.Binary;
using System.Diagnostics;
using System.IO.Compression;
using System.Text;
using System.Text.Json.Nodes;
using TorchSharp;
using WeCoLoRA.Checkpoints;
using Xunit;
using Xunit.Abstractions;

namespace WeCoLoRA.Tests.Checkpoints;

public sealed class CheckpointFuzzTests(ITestOutputHelper output) : IDisposable
{
    private const int DefaultIterations = 10_000;
    private static readonly TimeSpan CaseTimeout = TimeSpan.FromSeconds(5);
    private const long MaxManagedBytesPerCase = 256L << 20;
    private const long MaxTensorBytesPerCase = 256L << 20;
    private const long MaxHeapGrowth = 1L << 30;

    private static readonly string CorpusDir = Path.Combine(AppContext.BaseDirectory, "Fixtures", "checkpoints", "fuzz-corpus");
    private readonly string _tmp = Directory.CreateTempSubdirectory("wecolora-fuzz-").FullName;

    public void Dispose() => Directory.Delete(_tmp, recursive: true);

    private static int Iterations =>
        int.TryParse(Environment.GetEnvironmentVariable("WECOLORA_FUZZ_ITERATIONS"), out int n) && n > 0 ? n : DefaultIterations;

    private static int BaseSeed =>
        int.TryParse(Environment.GetEnvironmentVariable("WECOLORA_FUZZ_SEED"), out int s) ? s : 20240601;

    private static int? OnlyCase =>
        int.TryParse(Environment.GetEnvironmentVariable("WECOLORA_FUZZ_CASE"), out int c) ? c : null;

    // ------------------------------------------------------------------ driver

    [Fact]
    public void Fuzz_SafeTensors() => Fuzz("safetensors", Iterations * 4 / 10, (r, d) => MutateSafeTensors(r, d));

    [Fact]
    public void Fuzz_TorchZip() => Fuzz("pth", Iterations - Iterations * 4 / 10, (r, d) => MutatePth(r, d));

    private void Fuzz(string format, int count, Func<Random, StringBuilder, byte[]> mutate)
    {
        int seed = BaseSeed;
        var sw = Stopwatch.StartNew();
        // Live managed heap after a full collection: a leak in the readers shows up here; the process working set is
        // only reported, since other test classes run in parallel and move it (and the GC keeps freed pages).
        long startHeap = GC.GetTotalMemory(forceFullCollection: true);
        long startMemory = Environment.WorkingSet;
        int valid = 0, clean = 0;
        var failures = new Dictionary<string, string>(StringComparer.Ordinal);
        string path = Path.Combine(_tmp, "case." + format);
        int first = OnlyCase ?? 0, last = OnlyCase ?? count - 1;
        for (int i = first; i <= last; i++)
        {
            // Deterministic across processes (HashCode.Combine is randomized per process), so seed + case replays.
            var rng = new Random(unchecked(seed * 1_000_003 + i * 7_919 + format.Length * 104_729));
            var desc = new StringBuilder();
            byte[] bytes;
            try
            {
                bytes = mutate(rng, desc);
            }
            catch (Exception ex)
            {
                throw new InvalidOperationException($"mutator itself failed (seed {seed}, case {i}): {desc}", ex);
            }

            var (ok, failure) = RunCase(bytes, path);
            if (failure is null)
            {
                if (ok) valid++; else clean++;
                continue;
            }
            string signature = failure.Split('\n')[0];
            if (!failures.ContainsKey(signature))
            {
                string dir = Path.Combine(Path.GetTempPath(), "wecolora-fuzz-failures");
                Directory.CreateDirectory(dir);
                string saved = Path.Combine(dir, $"{format}-{seed}-{i}.bin");
                File.WriteAllBytes(saved, bytes);
                failures[signature] = $"seed {seed} case {i} ({format}; mutation: {desc}; input saved to {saved}):\n{failure}";
            }
            if (failure.StartsWith("timed out", StringComparison.Ordinal)) break; // the runaway task still holds the file
            if (failures.Count >= 20) break;
        }
        long heapGrowth = GC.GetTotalMemory(forceFullCollection: true) - startHeap;
        long growth = Environment.WorkingSet - startMemory;
        output.WriteLine($"{format}: {last - first + 1} mutations in {sw.Elapsed.TotalSeconds:F1} s: {valid} valid loads, {clean} CheckpointExceptions, {failures.Count} distinct failures; managed heap grew {heapGrowth >> 20} MiB, working set {growth >> 20} MiB");
        if (failures.Count > 0)
            Assert.Fail($"{failures.Count} distinct failures:\n\n" + string.Join("\n\n", failures.Values));
        Assert.True(heapGrowth < MaxHeapGrowth, $"managed heap grew by {heapGrowth >> 20} MiB during fuzzing");
    }

    /// <summary>(true, null): loaded; (false, null): clean CheckpointException; otherwise a failure description.</summary>
    private static (bool Ok, string? Failure) RunCase(byte[] bytes, string path)
    {
        File.WriteAllBytes(path, bytes);
        long allocated = 0, tensorBytes = 0;
        var task = Task.Run(() =>
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                var sd = StateDictFile.Load(path);
                foreach (var t in sd.Values)
                {
                    tensorBytes += t.numel() * t.element_size();
                    t.Dispose();
                }
                return null;
            }
            catch (Exception ex)
            {
                return ex;
            }
            finally
            {
                allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            }
        });
        if (!task.Wait(CaseTimeout)) return (false, $"timed out after {CaseTimeout.TotalSeconds} s");
        var error = task.Result;
        if (allocated > MaxManagedBytesPerCase)
            return (false, $"allocated {allocated >> 20} MiB of managed memory for a {bytes.Length}-byte file");
        if (tensorBytes > MaxTensorBytesPerCase)
            return (false, $"loaded {tensorBytes >> 20} MiB of tensors from a {bytes.Length}-byte file");
        return error switch
        {
            null => (true, null),
            CheckpointException => (false, null),
            _ => (false, $"{error.GetType().FullName} from {TopFrame(error)}\n{error}"),
        };
    }

    private static string TopFrame(Exception ex)
    {
        var frames = new StackTrace(ex, false).GetFrames();
        var own = frames.FirstOrDefault(f => f.GetMethod()?.DeclaringType?.Namespace?.StartsWith("WeCoLoRA", StringComparison.Ordinal) == true);
        var m = (own ?? frames.FirstOrDefault())?.GetMethod();
        return m is null ? "?" : $"{m.DeclaringType?.Name}.{m.Name}";
    }

    // ------------------------------------------------------------------ generic byte mutations

    private static readonly byte[] InterestingBytes = [0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE];
    private static readonly ulong[] InterestingInts =
    [
        0, 1, 2, 7, 8, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0x1_0000_0000,
        100_000_000, 100_000_001, 1UL << 40, 0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000, ulong.MaxValue,
    ];

    private static byte[] MutateBytes(Random r, byte[] input, StringBuilder d, int rounds = 0, int lo = 0)
    {
        var b = new List<byte>(input);
        if (rounds == 0) rounds = 1 + r.Next(4);
        for (int k = 0; k < rounds && b.Count > lo; k++)
        {
            int pos = lo + r.Next(b.Count - lo);
            switch (r.Next(8))
            {
                case 0:
                {
                    int bit = r.Next(8);
                    b[pos] ^= (byte)(1 << bit);
                    d.Append($"flip bit {bit} at {pos}; ");
                    break;
                }
                case 1:
                {
                    byte v = InterestingBytes[r.Next(InterestingBytes.Length)];
                    b[pos] = v;
                    d.Append($"byte {pos} := 0x{v:x2}; ");
                    break;
                }
                case 2:
                {
                    ulong v = InterestingInts[r.Next(InterestingInts.Length)];
                    int width = r.Next(2) == 0 ? 4 : 8;
                    for (int j = 0; j < width && pos + j < b.Count; j++) b[pos + j] = (byte)(v >> (8 * j));
                    d.Append($"u{width * 8} at {pos} := 0x{v:x}; ");
                    break;
                }
                case 3:
                    b.RemoveRange(pos, b.Count - pos);
                    d.Append($"truncate at {pos}; ");
                    break;
                case 4:
                {
                    int n = 1 + r.Next(16);
                    var ins = new byte[n];
                    r.NextBytes(ins);
                    b.InsertRange(pos, ins);
                    d.Append($"insert {Convert.ToHexString(ins)} at {pos}; ");
                    break;
                }
                case 5:
                {
                    int n = Math.Min(1 + r.Next(16), b.Count - pos);
                    b.RemoveRange(pos, n);
                    d.Append($"delete {n} at {pos}; ");
                    break;
                }
                case 6:
                {
                    int src = lo + r.Next(b.Count - lo), n = Math.Min(1 + r.Next(32), b.Count - src);
                    b.InsertRange(pos, b.GetRange(src, n));
                    d.Append($"copy {n} from {src} to {pos}; ");
                    break;
                }
                default:
                {
                    byte v = (byte)r.Next(256);
                    b[pos] = v;
                    d.Append($"byte {pos} := 0x{v:x2}; ");
                    break;
                }
            }
        }
        return [.. b];
    }

    // ------------------------------------------------------------------ safetensors

    private static readonly Lazy<byte[]> SeedSafeTensors = new(() => File.ReadAllBytes(Path.Combine(CorpusDir, "seed.safetensors")));

    private static byte[] MutateSafeTensors(Random r, StringBuilder d)
    {
        byte[] seed = SeedSafeTensors.Value;
        return r.Next(20) switch
        {
            < 7 => MutateBytes(r, seed, d),
            < 17 => EditHeader(r, seed, d),
            _ => SetHeaderLength(r, seed, d),
        };
    }

    private static byte[] SetHeaderLength(Random r, byte[] seed, StringBuilder d)
    {
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(seed);
        ulong[] choices = [0, 1, 2, 7, n - 1, n + 1, (ulong)seed.Length - 8, (ulong)seed.Length - 7, (ulong)seed.Length,
            100_000_000, 100_000_001, 0xFFFF_FFFF, 0x8000_0000_0000_0000, long.MaxValue, ulong.MaxValue];
        ulong v = choices[r.Next(choices.Length)];
        var b = (byte[])seed.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(b, v);
        d.Append($"header length := {v}; ");
        return b;
    }

    private static readonly JsonNode?[] DTypeValues =
        ["F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "U64", "f32", "", 7, null, new JsonArray()];

    private static JsonNode?[] DimValues() =>
        [-1, 0, 1, 2, 3, int.MaxValue, long.MaxValue, long.MinValue, 1L << 32, 1L << 62, 1e30, 1.5, "3", null, ulong.MaxValue];

    private static byte[] EditHeader(Random r, byte[] seed, StringBuilder d)
    {
        int n = (int)BinaryPrimitives.ReadUInt64LittleEndian(seed);
        var root = JsonNode.Parse(Encoding.UTF8.GetString(seed, 8, n))!.AsObject();
        byte[] data = seed[(8 + n)..];
        var keys = root.Select(kv => kv.Key).Where(k => k != "__metadata__").ToList();
        string? dupKey = null, rawKey = null, deep = null;
        int edits = 1 + r.Next(3);
        for (int k = 0; k < edits; k++)
        {
            string key = keys[r.Next(keys.Count)];
            if (root[key] is not JsonObject e) continue;
            try
            {
                EditEntry();
            }
            catch (Exception ex) when (ex is InvalidOperationException or NullReferenceException or FormatException)
            {
                d.Append("(edit skipped: an earlier edit removed what it changes); ");
            }

            void EditEntry()
            {
            switch (r.Next(12))
            {
                case 0:
                {
                    var v = DTypeValues[r.Next(DTypeValues.Length)]?.DeepClone();
                    e["dtype"] = v;
                    d.Append($"{key}.dtype := {v?.ToJsonString() ?? "null"}; ");
                    break;
                }
                case 1:
                case 2:
                {
                    var shape = e["shape"]!.AsArray();
                    var vals = DimValues();
                    var v = vals[r.Next(vals.Length)];
                    if (shape.Count == 0 || r.Next(3) == 0) { shape.Add(v); d.Append($"{key}.shape append {v?.ToJsonString() ?? "null"}; "); }
                    else { int i = r.Next(shape.Count); shape[i] = v; d.Append($"{key}.shape[{i}] := {v?.ToJsonString() ?? "null"}; "); }
                    break;
                }
                case 3:
                {
                    var shape = e["shape"]!.AsArray();
                    if (r.Next(2) == 0 && shape.Count > 0) { shape.RemoveAt(shape.Count - 1); d.Append($"{key}.shape drop last; "); }
                    else
                    {
                        int dims = r.Next(2) == 0 ? 65 : 200;
                        var ones = new JsonArray();
                        foreach (var x in shape) ones.Add(x?.DeepClone());
                        while (ones.Count < dims) ones.Add(1);
                        e["shape"] = ones;
                        d.Append($"{key}.shape padded with ones to {dims} dims; ");
                    }
                    break;
                }
                case 4:
                {
                    var o = e["data_offsets"]!.AsArray();
                    var (a, b) = ((long)o[0]!, (long)o[1]!);
                    e["data_offsets"] = new JsonArray(b, a);
                    d.Append($"{key}.data_offsets swapped; ");
                    break;
                }
                case 5:
                case 6:
                {
                    var o = e["data_offsets"]!.AsArray();
                    JsonNode?[] vals = [-1, 0, data.Length, data.Length + 1, long.MaxValue, ulong.MaxValue, 1e20, 4, 8, null];
                    int i = r.Next(2);
                    var v = vals[r.Next(vals.Length)];
                    o[i] = v?.DeepClone();
                    d.Append($"{key}.data_offsets[{i}] := {v?.ToJsonString() ?? "null"}; ");
                    break;
                }
                case 7:
                {
                    string other = keys[r.Next(keys.Count)];
                    e["data_offsets"] = root[other]!["data_offsets"]!.DeepClone();
                    d.Append($"{key}.data_offsets := {other}'s; ");
                    break;
                }
                case 8:
                {
                    var o = e["data_offsets"]!.AsArray();
                    long shift = r.Next(2) == 0 ? 1 : -2;
                    e["data_offsets"] = new JsonArray((long)o[0]! + shift, (long)o[1]! + shift);
                    d.Append($"{key}.data_offsets shifted by {shift}; ");
                    break;
                }
                case 9:
                {
                    string[] fields = ["dtype", "shape", "data_offsets"];
                    string f = fields[r.Next(3)];
                    if (r.Next(2) == 0) { e.Remove(f); d.Append($"{key}.{f} removed; "); }
                    else { e[f] = "x"; d.Append($"{key}.{f} := \"x\"; "); }
                    break;
                }
                case 10:
                {
                    switch (r.Next(5))
                    {
                        case 0: root[key] = new JsonArray(1, 2); d.Append($"{key} := [1,2]; "); break;
                        case 1: root["__metadata__"] = new JsonObject { ["n"] = 3 }; d.Append("metadata value := 3; "); break;
                        case 2: root["__metadata__"] = "x"; d.Append("metadata := \"x\"; "); break;
                        case 3: dupKey = key; d.Append($"duplicate key {key}; "); break;
                        default: deep = key; d.Append($"{key} nested 40 deep; "); break;
                    }
                    break;
                }
                default:
                {
                    string[] raw = ["\\ud800", "\\udfff\\ud800", "\\u0000", "a\\\"b", "\\ud83d\\ude00"];
                    rawKey = raw[r.Next(raw.Length)];
                    d.Append($"key {key} renamed to raw \"{rawKey}\"; ");
                    root.Remove(key);
                    root["\u0001raw\u0001"] = e.DeepClone();
                    keys.Remove(key);
                    if (keys.Count == 0) keys.Add("\u0001raw\u0001");
                    break;
                }
            }
            }
        }
        string json = root.ToJsonString();
        if (rawKey is not null) json = json.Replace("\\u0001raw\\u0001", rawKey, StringComparison.Ordinal);
        if (dupKey is not null && root[dupKey] is JsonNode dv) json = $"{{\"{dupKey}\":{dv.ToJsonString()}," + json[1..];
        if (deep is not null) json = $"{{\"{deep}\":{new string('[', 40)}{new string(']', 40)}," + json[1..];
        var h = Encoding.UTF8.GetBytes(json).ToList();
        while (h.Count % 8 != 0) h.Add((byte)' ');
        var outBytes = new byte[8 + h.Count + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(outBytes, (ulong)h.Count);
        h.CopyTo(outBytes, 8);
        data.CopyTo(outBytes, 8 + h.Count);
        if (r.Next(6) == 0) return MutateBytes(r, outBytes, d, 1);
        return outBytes;
    }

    // ------------------------------------------------------------------ torch.save zips

    private static readonly Lazy<(string Name, (string Entry, byte[] Data)[] Entries)[]> SeedZips = new(() =>
        Directory.GetFiles(CorpusDir, "seed*.pth").Order(StringComparer.Ordinal).Select(f =>
        {
            using var z = ZipFile.OpenRead(f);
            return (Path.GetFileName(f), z.Entries.Select(e =>
            {
                using var s = e.Open();
                var ms = new MemoryStream();
                s.CopyTo(ms);
                return (e.FullName, ms.ToArray());
            }).ToArray());
        }).ToArray());

    private static readonly (string From, string To)[] PickleTextEdits =
    [
        ("_rebuild_tensor_v2", "_rebuild_qtensor__"), ("collections", "builtins\n\n\n"), ("OrderedDict", "eval\n\n\n\n\n\n\n"),
        ("FloatStorage", "IntStorage\n\n"), ("FloatStorage", "Float8Storag"), ("HalfStorage", "BoolStorage"),
        ("storage", "storagf"), ("cpu", "cud"), ("torch", "numpy"), ("_rebuild_parameter", "_rebuild_qtensor__"),
    ];

    private static byte[] MutatePth(Random r, StringBuilder d)
    {
        var seeds = SeedZips.Value;
        var (name, seedEntries) = seeds[r.Next(seeds.Length)];
        d.Append($"{name}: ");
        var entries = seedEntries.Select(e => (e.Entry, e.Data)).ToList();
        int kind = r.Next(20);
        if (kind < 11)
        {
            int i = entries.FindIndex(e => e.Entry.EndsWith("/data.pkl", StringComparison.Ordinal));
            entries[i] = (entries[i].Entry, MutatePickle(r, entries[i].Data, d));
        }
        else if (kind < 15)
        {
            MutateEntries(r, entries, d);
        }
        byte[] zip = Zip(r, entries, d);
        if (kind >= 15) zip = MutateZipHeaders(r, zip, d);
        return zip;
    }

    private static byte[] MutatePickle(Random r, byte[] pkl, StringBuilder d)
    {
        d.Append("data.pkl: ");
        switch (r.Next(10))
        {
            case < 5:
                return MutateBytes(r, pkl, d, 0, 2);
            case 5:
            {
                // A length-prefixed opcode whose length runs far past the data.
                byte[][] snippets =
                [
                    [(byte)'X', 0xFF, 0xFF, 0xFF, 0xFF], [(byte)'X', 0xFF, 0xFF, 0xFF, 0x7F], [(byte)'B', 0x00, 0x00, 0x00, 0x80],
                    [(byte)'B', 0xFF, 0xFF, 0xFF, 0x7F], [0x8a, 0xFF], [0x8b, 0xFF, 0xFF, 0xFF, 0x7F], [0x8b, 0x00, 0x00, 0x00, 0x40],
                    [0x8d, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], [0x8e, 0x00, 0x00, 0x00, 0x80, 0, 0, 0, 0],
                    [(byte)'T', 0xFF, 0xFF, 0xFF, 0xFF], [(byte)'T', 0xFF, 0xFF, 0xFF, 0x7F], [(byte)'r', 0xFF, 0xFF, 0xFF, 0xFF],
                    [(byte)'j', 0xFF, 0xFF, 0xFF, 0xFF], [0x95, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
                ];
                var s = snippets[r.Next(snippets.Length)];
                int pos = 2 + r.Next(pkl.Length - 2);
                d.Append($"insert {Convert.ToHexString(s)} at {pos}; ");
                return [.. pkl[..pos], .. s, .. pkl[pos..]];
            }
            case 6:
            {
                // Deep nesting / many objects.
                int[] counts = [1_000, 100_000, 1_000_000];
                int n = counts[r.Next(r.Next(8) == 0 ? 3 : 2)];
                string[] patterns = ["(", "]", "}", ")", "]a", "(]", "}2", "N", "]q\u0001", "N\u0094", "K\u0001"];
                string p = patterns[r.Next(patterns.Length)];
                var block = new byte[n * p.Length];
                for (int i = 0; i < n; i++) Encoding.Latin1.GetBytes(p).CopyTo(block, i * p.Length);
                int pos = 2 + r.Next(pkl.Length - 2);
                d.Append($"insert '{p}' x {n} at {pos}; ");
                return [.. pkl[..pos], .. block, .. pkl[pos..]];
            }
            case 7:
            {
                var (from, to) = PickleTextEdits[r.Next(PickleTextEdits.Length)];
                string text = Encoding.Latin1.GetString(pkl);
                d.Append($"replace '{from}' -> '{to.ReplaceLineEndings("\\n")}'; ");
                return Encoding.Latin1.GetBytes(text.Replace(from, to, StringComparison.Ordinal));
            }
            case 8:
            {
                // Random known opcode with random argument bytes.
                byte[] ops = Encoding.Latin1.GetBytes("}])(XUTBCqr\u0094hjJKM\u008a\u008bG\u0088\u0089Ntlds\u0085\u0086\u0087uae012c\u0093R\u0081bQ.\u0080\u0095\u008c\u008d\u008e");
                var ins = new byte[1 + r.Next(5)];
                r.NextBytes(ins);
                ins[0] = ops[r.Next(ops.Length)];
                int pos = 2 + r.Next(pkl.Length - 2);
                d.Append($"insert {Convert.ToHexString(ins)} at {pos}; ");
                return [.. pkl[..pos], .. ins, .. pkl[pos..]];
            }
            default:
                return MutateBytes(r, pkl, d, 4 + r.Next(8), 2);
        }
    }

    private static void MutateEntries(Random r, List<(string Entry, byte[] Data)> entries, StringBuilder d)
    {
        string prefix = entries.First(e => e.Entry.EndsWith("/data.pkl", StringComparison.Ordinal)).Entry[..^"data.pkl".Length];
        var storages = entries.Select((e, i) => (e, i)).Where(x => x.e.Entry.StartsWith(prefix + "data/", StringComparison.Ordinal)).Select(x => x.i).ToList();
        int si = storages[r.Next(storages.Count)];
        var (sn, sd) = entries[si];
        switch (r.Next(9))
        {
            case 0: entries[si] = (sn, sd[..r.Next(sd.Length)]); d.Append($"truncate {sn}; "); break;
            case 1: entries[si] = (sn, [.. sd, .. new byte[1 + r.Next(9)]]); d.Append($"extend {sn}; "); break;
            case 2: entries[si] = (sn, MutateBytes(r, sd, d)); d.Append($"(in {sn}); "); break;
            case 3: entries.RemoveAt(si); d.Append($"remove {sn}; "); break;
            case 4:
            {
                string[] names = ["../evil", "/abs", "a\\b", "C:x", prefix + "data/../../x", prefix + "data/0", prefix + "data/" + new string('9', 300), prefix + "data/é"];
                string nn = names[r.Next(names.Length)];
                entries[si] = (nn, sd);
                d.Append($"rename {sn} -> {nn}; ");
                break;
            }
            case 5: entries.Add((sn, sd)); d.Append($"duplicate {sn}; "); break;
            case 6: entries.Add(("other/data.pkl", entries.First(e => e.Entry == prefix + "data.pkl").Data)); d.Append("second data.pkl; "); break;
            case 7: entries.Add((prefix + "constants.pkl", [0x80, 0x02, (byte)'N', (byte)'.'])); d.Append("add constants.pkl; "); break;
            default:
            {
                int bi = entries.FindIndex(e => e.Entry == prefix + "byteorder");
                byte[][] orders = ["big"u8.ToArray(), [], new byte[100], "little\n"u8.ToArray()];
                var o = orders[r.Next(orders.Length)];
                if (bi >= 0) entries[bi] = (entries[bi].Entry, o); else entries.Add((prefix + "byteorder", o));
                d.Append($"byteorder := '{Encoding.ASCII.GetString(o)}'; ");
                break;
            }
        }
    }

    private static byte[] Zip(Random r, List<(string Entry, byte[] Data)> entries, StringBuilder d)
    {
        var level = r.Next(4) == 0 ? CompressionLevel.Optimal : CompressionLevel.NoCompression;
        if (level != CompressionLevel.NoCompression) d.Append("deflated; ");
        var ms = new MemoryStream();
        using (var z = new ZipArchive(ms, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var (name, data) in entries)
            {
                using var s = z.CreateEntry(name, level).Open();
                s.Write(data);
            }
        }
        return ms.ToArray();
    }

    private static byte[] MutateZipHeaders(Random r, byte[] zip, StringBuilder d)
    {
        if (r.Next(3) == 0) return MutateBytes(r, zip, d);
        // Targeted: a size, offset, count or length field of a local header, central directory record or end record.
        var fields = new List<(int Offset, int Width, string What)>();
        for (int i = 0; i + 4 <= zip.Length; i++)
        {
            uint sig = BinaryPrimitives.ReadUInt32LittleEndian(zip.AsSpan(i));
            if (sig == 0x04034b50 && i + 30 <= zip.Length)
                fields.AddRange([(i + 8, 2, "local method"), (i + 14, 4, "local crc"), (i + 18, 4, "local compressed size"), (i + 22, 4, "local size"), (i + 26, 2, "local name length"), (i + 28, 2, "local extra length"), (i + 6, 2, "local flags")]);
            else if (sig == 0x02014b50 && i + 46 <= zip.Length)
                fields.AddRange([(i + 10, 2, "central method"), (i + 16, 4, "central crc"), (i + 20, 4, "central compressed size"), (i + 24, 4, "central size"), (i + 28, 2, "central name length"), (i + 30, 2, "central extra length"), (i + 42, 4, "central local-header offset"), (i + 8, 2, "central flags")]);
            else if (sig == 0x06054b50 && i + 22 <= zip.Length)
                fields.AddRange([(i + 8, 2, "end entries on disk"), (i + 10, 2, "end entries"), (i + 12, 4, "end directory size"), (i + 16, 4, "end directory offset"), (i + 20, 2, "end comment length")]);
        }
        var b = (byte[])zip.Clone();
        int edits = 1 + r.Next(2);
        for (int k = 0; k < edits && fields.Count > 0; k++)
        {
            var (off, width, what) = fields[r.Next(fields.Count)];
            ulong v = r.Next(3) == 0 ? (ulong)r.NextInt64() : InterestingInts[r.Next(InterestingInts.Length)];
            if (r.Next(4) == 0)
            {
                ulong cur = width == 2 ? BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(off)) : BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(off));
                v = cur + (ulong)(r.Next(2) == 0 ? 1 : -1);
            }
            for (int j = 0; j < width; j++) b[off + j] = (byte)(v >> (8 * j));
            d.Append($"{what} at {off} := 0x{v & (width == 2 ? 0xFFFFUL : 0xFFFF_FFFFUL):x}; ");
        }
        return b;
    }
}
