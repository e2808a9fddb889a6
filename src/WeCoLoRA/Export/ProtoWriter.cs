using System.Buffers.Binary;
using System.Text;

namespace WeCoLoRA.Export;

/// <summary>
/// The protobuf wire format, just what ONNX's messages need: varints (wire type 0), fixed 32-bit floats (5) and
/// length-delimited bytes, strings and sub-messages (2). A message is built in memory, except where the caller
/// streams a large payload itself after <see cref="LengthPrefix"/> (tensor data goes straight to the file).
/// </summary>
internal sealed class ProtoWriter
{
    readonly MemoryStream buffer = new();

    public long Length => buffer.Length;

    public ProtoWriter Int(int field, long value)
    {
        Tag(field, 0);
        Varint((ulong)value); // negative int64s take ten bytes, as protobuf's int64 does
        return this;
    }

    public ProtoWriter Float(int field, float value)
    {
        Tag(field, 5);
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteSingleLittleEndian(b, value);
        buffer.Write(b);
        return this;
    }

    public ProtoWriter Bytes(int field, ReadOnlySpan<byte> bytes)
    {
        LengthPrefix(field, bytes.Length);
        buffer.Write(bytes);
        return this;
    }

    public ProtoWriter String(int field, string value) => Bytes(field, Encoding.UTF8.GetBytes(value));

    public ProtoWriter Message(int field, ProtoWriter message)
    {
        LengthPrefix(field, message.Length);
        message.WriteTo(buffer);
        return this;
    }

    /// <summary>The tag and length of a length-delimited field whose <paramref name="length"/> bytes the caller writes next.</summary>
    public ProtoWriter LengthPrefix(int field, long length)
    {
        Tag(field, 2);
        Varint((ulong)length);
        return this;
    }

    public void WriteTo(Stream destination) => destination.Write(buffer.GetBuffer(), 0, (int)buffer.Length);

    /// <summary>Bytes a length-delimited field takes in all: tag, length varint and payload.</summary>
    public static long FieldSize(int field, long payload) => VarintSize((ulong)(field << 3 | 2)) + VarintSize((ulong)payload) + payload;

    static int VarintSize(ulong v)
    {
        int n = 1;
        while (v >= 0x80) { v >>= 7; n++; }
        return n;
    }

    void Tag(int field, int wireType) => Varint((ulong)(field << 3 | wireType));

    void Varint(ulong v)
    {
        while (v >= 0x80)
        {
            buffer.WriteByte((byte)(v | 0x80));
            v >>= 7;
        }
        buffer.WriteByte((byte)v);
    }
}
