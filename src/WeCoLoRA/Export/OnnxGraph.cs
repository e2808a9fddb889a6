using WeCoLoRA.Checkpoints;
using static TorchSharp.torch;

namespace WeCoLoRA.Export;

/// <summary>An ONNX node attribute (AttributeProto): an int, a float or a list of ints.</summary>
internal sealed record OnnxAttr(string Name, long? IntValue = null, float? FloatValue = null, long[]? Ints = null)
{
    public static OnnxAttr Int(string name, long v) => new(name, IntValue: v);
    public static OnnxAttr Float(string name, float v) => new(name, FloatValue: v);
    public static OnnxAttr IntList(string name, params long[] v) => new(name, Ints: v);

    public ProtoWriter Encode()
    {
        // AttributeProto: name = 1, f = 2, i = 3, ints = 8, type = 20 (FLOAT 1, INT 2, INTS 7).
        var w = new ProtoWriter().String(1, Name);
        if (FloatValue is { } f) w.Float(2, f).Int(20, 1);
        else if (IntValue is { } i) w.Int(3, i).Int(20, 2);
        else
        {
            foreach (var v in Ints!) w.Int(8, v);
            w.Int(20, 7);
        }
        return w;
    }
}

/// <summary>
/// Builds one ONNX GraphProto (nodes, graph inputs/outputs, initializers) and writes the ModelProto around it.
/// Initializer data is streamed from the tensors into the file, never copied into a protobuf buffer.
/// </summary>
internal sealed class OnnxGraph : IDisposable
{
    // TensorProto.DataType
    public const int Float32 = 1, Int64 = 7, Float16 = 10;

    readonly List<ProtoWriter> nodes = [];
    readonly List<ProtoWriter> inputs = [];
    readonly List<ProtoWriter> outputs = [];
    readonly List<(string Name, Tensor Data, int DataType)> initializers = [];
    readonly HashSet<string> names = [];

    /// <param name="computeType">The ONNX element type of weights and activations (<see cref="Float32"/> or <see cref="Float16"/>).</param>
    public OnnxGraph(int computeType) => ComputeType = computeType;

    public int ComputeType { get; }

    ScalarType ComputeScalarType => ComputeType == Float16 ? ScalarType.Float16 : ScalarType.Float32;

    /// <summary>A weight initializer in the compute type (a contiguous CPU copy of <paramref name="t"/>).</summary>
    public string Weight(string name, Tensor t)
    {
        using var _ = no_grad();
        using var cpu = t.detach().cpu();
        return Add(name, cpu.to(ComputeScalarType).contiguous(), ComputeType);
    }

    /// <summary>A scalar initializer in the compute type.</summary>
    public string Scalar(string name, float value)
    {
        using var f = tensor(value, ScalarType.Float32);
        return Add(name, f.to(ComputeScalarType), ComputeType);
    }

    /// <summary>An int64 initializer: a 1-D list, or a scalar (0-D) when <paramref name="scalar"/>.</summary>
    public string Int64s(string name, long[] values, bool scalar = false)
    {
        if (!scalar) return Add(name, tensor(values, ScalarType.Int64), Int64);
        using var t = tensor(values, ScalarType.Int64);
        return Add(name, t.reshape([]), Int64);
    }

    string Add(string name, Tensor data, int dataType)
    {
        Claim(name);
        initializers.Add((name, data, dataType));
        return name;
    }

    /// <summary>Adds a node whose single output is named <paramref name="output"/>; returns that name.</summary>
    public string Node(string op, string output, string[] nodeInputs, params OnnxAttr[] attrs) => Nodes(op, [output], nodeInputs, attrs)[0];

    public string[] Nodes(string op, string[] nodeOutputs, string[] nodeInputs, params OnnxAttr[] attrs)
    {
        foreach (var o in nodeOutputs) Claim(o);
        // NodeProto: input = 1, output = 2, name = 3, op_type = 4, attribute = 5.
        var w = new ProtoWriter();
        foreach (var i in nodeInputs) w.String(1, i);
        foreach (var o in nodeOutputs) w.String(2, o);
        w.String(3, nodeOutputs[0]).String(4, op);
        foreach (var a in attrs) w.Message(5, a.Encode());
        nodes.Add(w);
        return nodeOutputs;
    }

    /// <summary>A graph input; a dimension is a size (long) or a symbolic name (string, e.g. the batch "N").</summary>
    public void Input(string name, int elemType, params object[] dims)
    {
        Claim(name);
        inputs.Add(ValueInfo(name, elemType, dims));
    }

    public void Output(string name, int elemType, params object[] dims) => outputs.Add(ValueInfo(name, elemType, dims));

    static ProtoWriter ValueInfo(string name, int elemType, object[] dims)
    {
        // ValueInfoProto{name 1, type 2} → TypeProto{tensor_type 1} → Tensor{elem_type 1, shape 2}
        // → TensorShapeProto{dim 1} → Dimension{dim_value 1 | dim_param 2}.
        var shape = new ProtoWriter();
        foreach (var d in dims)
        {
            var dim = d switch
            {
                string s => new ProtoWriter().String(2, s),
                _ => new ProtoWriter().Int(1, Convert.ToInt64(d)),
            };
            shape.Message(1, dim);
        }
        var tensorType = new ProtoWriter().Int(1, elemType).Message(2, shape);
        return new ProtoWriter().String(1, name).Message(2, new ProtoWriter().Message(1, tensorType));
    }

    void Claim(string name)
    {
        if (!names.Add(name)) throw new InvalidOperationException($"ONNX graph: the name '{name}' is used twice");
    }

    /// <summary>
    /// Writes the ModelProto (IR version, opset, producer, graph) to <paramref name="path"/> atomically; refuses a file
    /// over protobuf's 2 GiB limit (that needs ONNX external data, which is not written).
    /// </summary>
    /// <param name="maxBytes">The size limit; only tests lower it.</param>
    public long Save(string path, string graphName, long irVersion, long opset, string producerVersion, long maxBytes = int.MaxValue)
    {
        // GraphProto: node = 1, name = 2, initializer = 5, input = 11, output = 12.
        var graphHead = new ProtoWriter();
        foreach (var n in nodes) graphHead.Message(1, n);
        graphHead.String(2, graphName);
        foreach (var i in inputs) graphHead.Message(11, i);
        foreach (var o in outputs) graphHead.Message(12, o);
        var tensors = initializers.Select(init =>
        {
            // TensorProto: dims = 1, data_type = 2, name = 8, raw_data = 9 (little-endian bytes).
            var head = new ProtoWriter();
            foreach (var d in init.Data.shape) head.Int(1, d);
            head.Int(2, init.DataType).String(8, init.Name);
            long dataBytes = init.Data.numel() * init.Data.element_size();
            return (Head: head, init.Data, DataBytes: dataBytes, Size: head.Length + ProtoWriter.FieldSize(9, dataBytes));
        }).ToList();
        long graphSize = graphHead.Length + tensors.Sum(t => ProtoWriter.FieldSize(5, t.Size));

        var model = new ProtoWriter()
            .Int(1, irVersion)                                  // ir_version
            .String(2, "WeCoLoRA.NET")                          // producer_name
            .String(3, producerVersion)                         // producer_version
            .Message(8, new ProtoWriter().String(1, "").Int(2, opset)); // opset_import {domain "" (ai.onnx), version}
        long total = model.Length + ProtoWriter.FieldSize(7, graphSize);
        if (total > maxBytes)
            throw new ArgumentException($"the ONNX model would be {total / (1L << 20)} MiB; a single .onnx protobuf is limited to 2 GiB and external data is not written yet (export with --fp16 to halve it, or use safetensors)");

        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(dir);
        var tmp = path + ".tmp";
        using (var file = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
        {
            model.WriteTo(file);
            model = new ProtoWriter().LengthPrefix(7, graphSize);
            model.WriteTo(file);
            graphHead.WriteTo(file);
            foreach (var t in tensors)
            {
                new ProtoWriter().LengthPrefix(5, t.Size).WriteTo(file);
                t.Head.WriteTo(file);
                new ProtoWriter().LengthPrefix(9, t.DataBytes).WriteTo(file);
                TensorBytes.WriteFrom(t.Data, file);
            }
            if (file.Length != total)
                throw new InvalidOperationException($"ONNX writer: wrote {file.Length} bytes, expected {total}");
        }
        File.Move(tmp, path, overwrite: true);
        return total;
    }

    public void Dispose()
    {
        foreach (var init in initializers) init.Data.Dispose();
        initializers.Clear();
    }
}
