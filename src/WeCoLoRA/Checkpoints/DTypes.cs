using TorchSharp;

namespace WeCoLoRA.Checkpoints;

/// <summary>Maps safetensors dtype names and torch storage names to TorchSharp scalar types.</summary>
internal static class DTypes
{
    private static readonly (string Safetensors, torch.ScalarType Type, int Size)[] Table =
    [
        ("F64", torch.ScalarType.Float64, 8),
        ("F32", torch.ScalarType.Float32, 4),
        ("F16", torch.ScalarType.Float16, 2),
        ("BF16", torch.ScalarType.BFloat16, 2),
        ("I64", torch.ScalarType.Int64, 8),
        ("I32", torch.ScalarType.Int32, 4),
        ("I16", torch.ScalarType.Int16, 2),
        ("I8", torch.ScalarType.Int8, 1),
        ("U8", torch.ScalarType.Byte, 1),
        ("BOOL", torch.ScalarType.Bool, 1),
    ];

    public static string KnownSafetensorsNames => string.Join(", ", Table.Select(t => t.Safetensors));

    public static bool TryFromSafetensors(string name, out torch.ScalarType type, out int size)
    {
        foreach (var t in Table)
        {
            if (t.Safetensors == name) { type = t.Type; size = t.Size; return true; }
        }
        type = default; size = 0;
        return false;
    }

    public static bool TryToSafetensors(torch.ScalarType type, out string name)
    {
        foreach (var t in Table)
        {
            if (t.Type == type) { name = t.Safetensors; return true; }
        }
        name = "";
        return false;
    }

    /// <summary>torch.FloatStorage etc. (the names torch.save writes in persistent ids, 1.x and 2.x alike).</summary>
    public static bool TryFromStorageName(string name, out torch.ScalarType type, out int size)
    {
        (torch.ScalarType, int)? r = name switch
        {
            "DoubleStorage" => (torch.ScalarType.Float64, 8),
            "FloatStorage" => (torch.ScalarType.Float32, 4),
            "HalfStorage" => (torch.ScalarType.Float16, 2),
            "BFloat16Storage" => (torch.ScalarType.BFloat16, 2),
            "LongStorage" => (torch.ScalarType.Int64, 8),
            "IntStorage" => (torch.ScalarType.Int32, 4),
            "ShortStorage" => (torch.ScalarType.Int16, 2),
            "CharStorage" => (torch.ScalarType.Int8, 1),
            "ByteStorage" => (torch.ScalarType.Byte, 1),
            "BoolStorage" => (torch.ScalarType.Bool, 1),
            "UntypedStorage" => (torch.ScalarType.Byte, 1),
            _ => null,
        };
        type = r?.Item1 ?? default;
        size = r?.Item2 ?? 0;
        return r is not null;
    }
}
