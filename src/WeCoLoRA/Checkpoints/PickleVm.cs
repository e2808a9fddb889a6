using System.Buffers.Binary;
using System.Numerics;
using System.Text;
using TorchSharp;

namespace WeCoLoRA.Checkpoints;

// Values the pickle VM produces. Nothing here ever runs code named by the pickle: globals outside the
// allow-list become RefusedGlobal, and "calling" one yields an inert RefusedObject.

internal sealed class PyTuple(object?[] items)
{
    public object?[] Items { get; } = items;
}

internal sealed class PyList
{
    public List<object?> Items { get; } = [];
}

internal sealed class PyDict
{
    private readonly Dictionary<object, int> _index = [];
    public List<KeyValuePair<object?, object?>> Items { get; } = [];

    public void Set(object? key, object? value)
    {
        if (key is string or long or bool)
        {
            if (_index.TryGetValue(key, out int i)) { Items[i] = new(key, value); return; }
            _index[key] = Items.Count;
        }
        Items.Add(new(key, value));
    }

    public object? Get(string key) => _index.TryGetValue(key, out int i) ? Items[i].Value : null;
}

internal sealed class PyNone
{
    public static readonly PyNone Instance = new();
}

/// <summary>A module-level name from GLOBAL / STACK_GLOBAL.</summary>
internal sealed record PyGlobal(string Module, string Name, bool Allowed)
{
    public string FullName => $"{Module}.{Name}";
}

/// <summary>The inert result of calling or building a refused global; remembers which global it came from.</summary>
internal sealed record RefusedObject(string Global);

internal sealed record StorageRef(string Key, torch.ScalarType Type, int ElementSize, long Numel);

/// <summary>A tensor described by the pickle; its bytes are only read if it ends up in the returned state dict.</summary>
internal sealed record LazyTensor(StorageRef Storage, long Offset, long[] Size, long[] Stride);

/// <summary>A pickle interpreter restricted to what torch.save writes (protocol 2, plus the framing opcodes of 4).</summary>
internal sealed class PickleVm(byte[] data, string file, Func<PyTuple, long, object> persistentLoad)
{
    private static readonly HashSet<string> AllowedGlobals =
    [
        "collections.OrderedDict",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state",
        "torch.DoubleStorage", "torch.FloatStorage", "torch.HalfStorage", "torch.BFloat16Storage",
        "torch.LongStorage", "torch.IntStorage", "torch.ShortStorage", "torch.CharStorage",
        "torch.ByteStorage", "torch.BoolStorage", "torch.UntypedStorage",
    ];

    /// <summary>Largest element count a view may have when it is bigger than its storage (stride-0 expansion).</summary>
    internal const long MaxExpandedElements = 1L << 26;

    /// <summary>Most dimensions a tensor may have (libtorch kernels stop well before; real checkpoints use a handful).</summary>
    internal const int MaxDims = 64;

    // Bounds on the work a pickle can demand. A state dict needs a few dozen values per tensor, so these are far
    // above any real checkpoint, and far below what would exhaust memory; past them the file is refused cleanly.
    internal const int MaxStackDepth = 1_000_000;
    internal const int MaxMarks = 100_000;
    internal const int MaxMemoEntries = 10_000_000;
    internal const long MaxObjects = 20_000_000;

    /// <summary>Longest LONG1/LONG4 integer accepted, in bytes (torch.save writes at most 8).</summary>
    internal const int MaxLongBytes = 1024;

    private long _objects;

    private readonly List<object?> _stack = [];
    private readonly List<int> _marks = [];
    private readonly Dictionary<long, object?> _memo = [];
    private int _pos;

    public object? Run()
    {
        while (true)
        {
            if (_pos >= data.Length) throw Fail(_pos, "ends without a STOP opcode; the file is truncated");
            int at = _pos;
            byte op = data[_pos++];
            switch (op)
            {
                case 0x80: ReadBytes(1, at); break; // PROTO
                case 0x95: ReadBytes(8, at); break; // FRAME (framing is only a read-ahead hint)
                case (byte)'}': Push(new PyDict()); break; // EMPTY_DICT
                case (byte)']': Push(new PyList()); break; // EMPTY_LIST
                case (byte)')': Push(new PyTuple([])); break; // EMPTY_TUPLE
                case (byte)'(': // MARK
                    if (_marks.Count >= MaxMarks) throw Fail(at, $"nests more than {MaxMarks} MARKs; this is not a state dict");
                    _marks.Add(_stack.Count);
                    break;
                case (byte)'X': Push(Utf8(ReadBytes(LengthFromU32(at), at), at)); break; // BINUNICODE
                case 0x8c: Push(Utf8(ReadBytes(ReadU8(at), at), at)); break; // SHORT_BINUNICODE
                case 0x8d: Push(Utf8(ReadBytes(LengthFromU64(at), at), at)); break; // BINUNICODE8
                case (byte)'T': Push(Latin1(ReadBytes(LengthFromI32(at), at))); break; // BINSTRING
                case (byte)'U': Push(Latin1(ReadBytes(ReadU8(at), at))); break; // SHORT_BINSTRING
                case (byte)'B': Push(ReadBytes(LengthFromU32(at), at).ToArray()); break; // BINBYTES
                case (byte)'C': Push(ReadBytes(ReadU8(at), at).ToArray()); break; // SHORT_BINBYTES
                case 0x8e: Push(ReadBytes(LengthFromU64(at), at).ToArray()); break; // BINBYTES8
                case (byte)'q': Memoize(ReadU8(at), at); break; // BINPUT
                case (byte)'r': Memoize(ReadU32(at), at); break; // LONG_BINPUT
                case 0x94: Memoize(_memo.Count, at); break; // MEMOIZE
                case (byte)'h': Push(MemoGet(ReadU8(at), at)); break; // BINGET
                case (byte)'j': Push(MemoGet(ReadU32(at), at)); break; // LONG_BINGET
                case (byte)'J': Push((long)BinaryPrimitives.ReadInt32LittleEndian(ReadBytes(4, at))); break; // BININT
                case (byte)'K': Push((long)ReadU8(at)); break; // BININT1
                case (byte)'M': Push((long)BinaryPrimitives.ReadUInt16LittleEndian(ReadBytes(2, at))); break; // BININT2
                case 0x8a: Push(DecodeLong(ReadBytes(ReadU8(at), at))); break; // LONG1 (at most 255 bytes)
                case 0x8b: // LONG4
                {
                    int n = LengthFromI32(at);
                    if (n > MaxLongBytes) throw Fail(at, $"has a {n}-byte integer, over the {MaxLongBytes}-byte limit; this is not a state dict");
                    Push(DecodeLong(ReadBytes(n, at)));
                    break;
                }
                case (byte)'G': Push(BinaryPrimitives.ReadDoubleBigEndian(ReadBytes(8, at))); break; // BINFLOAT
                case 0x88: Push(true); break; // NEWTRUE
                case 0x89: Push(false); break; // NEWFALSE
                case (byte)'N': Push(PyNone.Instance); break; // NONE
                case (byte)'t': Push(new PyTuple(PopMark(at).ToArray())); break; // TUPLE
                case 0x85: { var a = Pop(at); Push(new PyTuple([a])); break; } // TUPLE1
                case 0x86: { var b = Pop(at); var a = Pop(at); Push(new PyTuple([a, b])); break; } // TUPLE2
                case 0x87: { var c = Pop(at); var b = Pop(at); var a = Pop(at); Push(new PyTuple([a, b, c])); break; } // TUPLE3
                case (byte)'l': { var list = new PyList(); list.Items.AddRange(PopMark(at)); Push(list); break; } // LIST
                case (byte)'d': Push(MakeDict(PopMark(at), at)); break; // DICT
                case (byte)'s': { var v = Pop(at); var k = Pop(at); SetItems(Peek(at), [k, v], at); break; } // SETITEM
                case (byte)'u': { var items = PopMark(at); SetItems(Peek(at), items, at); break; } // SETITEMS
                case (byte)'a': { var v = Pop(at); Append(Peek(at), [v], at); break; } // APPEND
                case (byte)'e': { var items = PopMark(at); Append(Peek(at), items, at); break; } // APPENDS
                case (byte)'0': Pop(at); break; // POP
                case (byte)'1': PopMark(at); break; // POP_MARK
                case (byte)'2': Push(Peek(at)); break; // DUP
                case (byte)'c': // GLOBAL
                {
                    string module = ReadLine(at), name = ReadLine(at);
                    Push(MakeGlobal(module, name));
                    break;
                }
                case 0x93: // STACK_GLOBAL
                {
                    var name = Pop(at) as string ?? throw Fail(at, "STACK_GLOBAL needs a string name");
                    var module = Pop(at) as string ?? throw Fail(at, "STACK_GLOBAL needs a string module");
                    Push(MakeGlobal(module, name));
                    break;
                }
                case (byte)'R': { var args = Pop(at); var f = Pop(at); Push(Call(f, args, at)); break; } // REDUCE
                case 0x81: { var args = Pop(at); var cls = Pop(at); Push(Call(cls, args, at)); break; } // NEWOBJ
                case (byte)'b': { var state = Pop(at); Build(Peek(at), state, at); break; } // BUILD
                case (byte)'Q': // BINPERSID
                {
                    var pid = Pop(at) as PyTuple ?? throw Fail(at, "BINPERSID needs a tuple persistent id");
                    Push(persistentLoad(pid, at));
                    break;
                }
                case (byte)'.': // STOP
                    if (_stack.Count != 1) throw Fail(at, $"STOP with {_stack.Count} values on the stack instead of 1");
                    return _stack[0];
                default:
                    throw Fail(at, $"uses unsupported pickle opcode 0x{op:x2} ('{(op >= 0x20 && op < 0x7f ? (char)op : '?')}'); only what torch.save writes is supported, re-save with torch.save");
            }
        }
    }

    private PyGlobal MakeGlobal(string module, string name)
    {
        // Python 3 writes some builtins under their Python 2 names in protocol 2; neither is on the allow-list anyway.
        return new PyGlobal(module, name, AllowedGlobals.Contains($"{module}.{name}"));
    }

    private object Call(object? callable, object? args, int at)
    {
        switch (callable)
        {
            case PyGlobal { Allowed: false } g: return new RefusedObject(g.FullName);
            case RefusedObject r: return r;
            case PyGlobal g:
            {
                var a = args as PyTuple ?? throw Fail(at, $"arguments to '{g.FullName}' are not a tuple");
                return g.FullName switch
                {
                    "collections.OrderedDict" => MakeOrderedDict(a, at),
                    "torch._utils._rebuild_tensor_v2" => RebuildTensor(a, at),
                    "torch._utils._rebuild_parameter" or "torch._utils._rebuild_parameter_with_state" =>
                        a.Items.Length >= 1 && a.Items[0] is LazyTensor or RefusedObject
                            ? a.Items[0]!
                            : throw Fail(at, $"'{g.FullName}' is not given a tensor"),
                    _ => throw Fail(at, $"calls '{g.FullName}', which is only allowed as a storage type in a persistent id"),
                };
            }
            default:
                throw Fail(at, $"calls a {Describe(callable)}, which is not callable");
        }
    }

    private PyDict MakeOrderedDict(PyTuple a, int at)
    {
        var d = new PyDict();
        if (a.Items.Length == 0) return d;
        if (a.Items.Length == 1 && a.Items[0] is PyList list)
        {
            foreach (var item in list.Items)
            {
                if (item is not PyTuple { Items.Length: 2 } kv) throw Fail(at, "OrderedDict is given a list that is not of pairs");
                d.Set(kv.Items[0], kv.Items[1]);
            }
            return d;
        }
        throw Fail(at, "OrderedDict is given arguments torch.save does not write");
    }

    private LazyTensor RebuildTensor(PyTuple a, int at)
    {
        if (a.Items.Length is < 6 or > 7)
            throw Fail(at, $"_rebuild_tensor_v2 has {a.Items.Length} arguments instead of 6 or 7");
        var storage = a.Items[0] as StorageRef ?? throw Fail(at, "_rebuild_tensor_v2 is not given a storage");
        if (a.Items[1] is not long offset || offset < 0) throw Fail(at, "_rebuild_tensor_v2 storage offset is not a non-negative integer");
        long[] size = LongTuple(a.Items[2], "size", at), stride = LongTuple(a.Items[3], "stride", at);
        if (size.Length != stride.Length) throw Fail(at, $"_rebuild_tensor_v2 size has {size.Length} dims but stride has {stride.Length}");
        if (size.Length > MaxDims) throw Fail(at, $"_rebuild_tensor_v2 size has {size.Length} dims, over the {MaxDims}-dim limit; the file is corrupt");
        try
        {
            long numel = 1, last = offset, extent = 1;
            for (int i = 0; i < size.Length; i++)
            {
                numel = checked(numel * size[i]);
                // libtorch computes contiguous strides over max(size, 1) even for empty tensors, so that product
                // must fit as well ([0, 2^62, 4] is empty, yet copying it overflows inside torch).
                extent = checked(extent * Math.Max(size[i], 1));
                if (size[i] > 0) last = checked(last + (size[i] - 1) * stride[i]);
            }
            bool inside = numel == 0 ? offset <= storage.Numel : last < storage.Numel;
            // Stride-0 (expanded) views can describe far more elements than their storage holds; materializing one
            // copies it, so cap that growth instead of letting a small file demand terabytes.
            if (numel > storage.Numel && numel > MaxExpandedElements)
                throw Fail(at, $"expanded tensor of size [{string.Join(", ", size)}] would need {numel} elements from storage '{storage.Key}' of {storage.Numel}; over the {MaxExpandedElements}-element limit for expanded views, save a contiguous copy instead");
            if (!inside)
                throw Fail(at, $"tensor of size [{string.Join(", ", size)}] stride [{string.Join(", ", stride)}] offset {offset} reaches past storage '{storage.Key}' of {storage.Numel} elements; the file is corrupt");
        }
        catch (OverflowException)
        {
            throw Fail(at, $"tensor of size [{string.Join(", ", size)}] stride [{string.Join(", ", stride)}] overflows; the file is corrupt");
        }
        return new LazyTensor(storage, offset, size, stride);
    }

    private long[] LongTuple(object? v, string what, int at)
    {
        if (v is not PyTuple t) throw Fail(at, $"_rebuild_tensor_v2 {what} is not a tuple");
        var r = new long[t.Items.Length];
        for (int i = 0; i < r.Length; i++)
        {
            if (t.Items[i] is not long x || x < 0) throw Fail(at, $"_rebuild_tensor_v2 {what} holds {Describe(t.Items[i])}, not a non-negative integer");
            r[i] = x;
        }
        return r;
    }

    private void Build(object? target, object? state, int at)
    {
        switch (target)
        {
            case RefusedObject: return; // inert: nothing is set on it, nothing runs
            case PyDict: return; // OrderedDict's instance attributes (state_dict()._metadata): not needed
            case LazyTensor: return; // tensor Python attributes: not needed
            default: throw Fail(at, $"BUILD on a {Describe(target)} ({Describe(state)} state), which torch.save does not write");
        }
    }

    private PyDict MakeDict(List<object?> items, int at)
    {
        var d = new PyDict();
        SetItems(d, items, at);
        return d;
    }

    private void SetItems(object? target, List<object?> items, int at)
    {
        if (items.Count % 2 != 0) throw Fail(at, "SETITEMS with an odd number of values");
        if (target is RefusedObject) return;
        if (target is not PyDict d) throw Fail(at, $"SETITEM on a {Describe(target)}");
        for (int i = 0; i < items.Count; i += 2) d.Set(items[i], items[i + 1]);
    }

    private void Append(object? target, List<object?> items, int at)
    {
        if (target is RefusedObject) return;
        if (target is not PyList l) throw Fail(at, $"APPEND on a {Describe(target)}");
        l.Items.AddRange(items);
    }

    internal static string Describe(object? v) => v switch
    {
        null or PyNone => "None",
        string s => $"string '{(s.Length > 40 ? s[..40] + "..." : s)}'",
        long or BigInteger => "integer",
        double => "float",
        bool => "bool",
        byte[] => "bytes",
        PyTuple => "tuple",
        PyList => "list",
        PyDict => "dict",
        PyGlobal g => $"global '{g.FullName}'",
        RefusedObject r => $"object built by refused global '{r.Global}'",
        StorageRef => "storage",
        LazyTensor => "tensor",
        _ => v.GetType().Name,
    };

    private static object DecodeLong(ReadOnlySpan<byte> b)
    {
        if (b.Length == 0) return 0L;
        var big = new BigInteger(b, isUnsigned: false, isBigEndian: false);
        // The cast to object matters: without it the conditional's type is BigInteger and every LONG1 value
        // (what torch.save writes for ints past 2^31, e.g. large numel) would fail the "is long" checks.
        return big >= long.MinValue && big <= long.MaxValue ? (object)(long)big : big;
    }

    private object? MemoGet(long idx, int at) =>
        _memo.TryGetValue(idx, out var v) ? v : throw Fail(at, $"reads memo slot {idx}, which was never written; the file is corrupt");

    private void Push(object? v)
    {
        // Every opcode that creates or copies a value goes through here, so this bounds both the live stack and
        // the total work (containers keep what is appended to them, so the stack alone would not).
        if (_stack.Count >= MaxStackDepth) throw Fail(_pos, $"holds more than {MaxStackDepth} values on the stack; this is not a state dict");
        if (++_objects > MaxObjects) throw Fail(_pos, $"builds more than {MaxObjects} values; this is not a state dict");
        _stack.Add(v);
    }

    private void Memoize(long idx, int at)
    {
        var v = Peek(at);
        if (_memo.Count >= MaxMemoEntries && !_memo.ContainsKey(idx))
            throw Fail(at, $"stores more than {MaxMemoEntries} memo entries; this is not a state dict");
        _memo[idx] = v;
    }

    private object? Pop(int at)
    {
        if (_stack.Count == 0 || (_marks.Count > 0 && _stack.Count <= _marks[^1])) throw Fail(at, "pops an empty stack; the file is corrupt");
        var v = _stack[^1];
        _stack.RemoveAt(_stack.Count - 1);
        return v;
    }

    private object? Peek(int at) =>
        _stack.Count > 0 ? _stack[^1] : throw Fail(at, "reads an empty stack; the file is corrupt");

    private List<object?> PopMark(int at)
    {
        if (_marks.Count == 0) throw Fail(at, "has no MARK to pop to; the file is corrupt");
        int m = _marks[^1];
        _marks.RemoveAt(_marks.Count - 1);
        var items = _stack.GetRange(m, _stack.Count - m);
        _stack.RemoveRange(m, _stack.Count - m);
        return items;
    }

    private ReadOnlySpan<byte> ReadBytes(int n, int at)
    {
        if (n < 0 || n > data.Length - _pos) throw Fail(at, $"needs {n} bytes but only {data.Length - _pos} remain; the file is truncated");
        var s = data.AsSpan(_pos, n);
        _pos += n;
        return s;
    }

    private int ReadU8(int at) => ReadBytes(1, at)[0];

    private uint ReadU32(int at) => BinaryPrimitives.ReadUInt32LittleEndian(ReadBytes(4, at));

    private int LengthFromU32(int at)
    {
        uint n = ReadU32(at);
        return n <= (uint)(data.Length - _pos) ? (int)n : throw Fail(at, $"has length {n}, but only {data.Length - _pos} bytes remain; the file is corrupt");
    }

    private int LengthFromI32(int at)
    {
        int n = BinaryPrimitives.ReadInt32LittleEndian(ReadBytes(4, at));
        return n >= 0 ? n : throw Fail(at, $"has negative length {n}; the file is corrupt");
    }

    private int LengthFromU64(int at)
    {
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(ReadBytes(8, at));
        return n <= int.MaxValue ? (int)n : throw Fail(at, $"has length {n}, past the end of the data; the file is corrupt");
    }

    private string ReadLine(int at)
    {
        int nl = Array.IndexOf(data, (byte)'\n', _pos, Math.Min(256, data.Length - _pos));
        if (nl < 0) throw Fail(at, "GLOBAL name is not terminated by a newline within 256 bytes; the file is corrupt");
        var s = Utf8(data.AsSpan(_pos, nl - _pos), at);
        _pos = nl + 1;
        return s;
    }

    private static readonly UTF8Encoding StrictUtf8 = new(false, throwOnInvalidBytes: true);

    private string Utf8(ReadOnlySpan<byte> b, int at)
    {
        try { return StrictUtf8.GetString(b); }
        catch (DecoderFallbackException) { throw Fail(at, "has a string that is not valid UTF-8; the file is corrupt"); }
    }

    private static string Latin1(ReadOnlySpan<byte> b) => Encoding.Latin1.GetString(b);

    private CheckpointException Fail(int at, string what) => new($"'{file}': pickle at offset {at} {what}");
}
