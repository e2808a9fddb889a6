using Microsoft.ML.OnnxRuntime;
using WeCoLoRA.Checkpoints;

namespace WeCoLoRA.Export;

/// <summary>One batch's results: row-major [Batch, FeatureDim] features and, for models with a head, [Batch, NumClasses] logits.</summary>
public sealed record OnnxOutputs(int Batch, int FeatureDim, float[] Features, int NumClasses, float[]? Logits)
{
    public ReadOnlySpan<float> FeatureRow(int i) => Features.AsSpan(i * FeatureDim, FeatureDim);
    public ReadOnlySpan<float> LogitRow(int i) => Logits is null ? throw new InvalidOperationException("the model has no head (no logits output)") : Logits.AsSpan(i * NumClasses, NumClasses);
}

/// <summary>
/// Runs a model.onnx written by <see cref="OnnxExporter"/> with ONNX Runtime (CPU): a float32 batch of normalized
/// CHW images in, features (and logits when the model has a head) out.
/// </summary>
public sealed class OnnxInference : IDisposable
{
    readonly InferenceSession session;
    readonly string[] outputNames;

    public string Path { get; }
    public int InChans { get; }
    public int ImgSize { get; }
    public int FeatureDim { get; }
    /// <summary>Width of the logits output; 0 when the model has no head.</summary>
    public int NumClasses { get; }
    public bool HasLogits => NumClasses > 0;
    /// <summary>Floats in one sample: InChans × ImgSize × ImgSize.</summary>
    public int SampleLength => InChans * ImgSize * ImgSize;

    OnnxInference(string path, InferenceSession session)
    {
        Path = path;
        this.session = session;
        if (!session.InputMetadata.TryGetValue(OnnxExporter.InputName, out var input) || input.Dimensions.Length != 4
            || !session.OutputMetadata.TryGetValue(OnnxExporter.FeaturesName, out var features))
        {
            throw new CheckpointException($"'{path}': expected an input '{OnnxExporter.InputName}' [N, C, H, W] and an output '{OnnxExporter.FeaturesName}' "
                + $"(as wecolora exports); it has inputs {string.Join(", ", session.InputMetadata.Keys)} and outputs {string.Join(", ", session.OutputMetadata.Keys)}");
        }
        (InChans, ImgSize) = (input.Dimensions[1], input.Dimensions[2]);
        if (InChans <= 0 || ImgSize <= 0 || input.Dimensions[3] != ImgSize)
            throw new CheckpointException($"'{path}': input {OnnxExporter.InputName} must have a fixed square size, not [{string.Join(", ", input.Dimensions)}]");
        FeatureDim = features.Dimensions[^1];
        NumClasses = session.OutputMetadata.TryGetValue(OnnxExporter.LogitsName, out var logits) ? logits.Dimensions[^1] : 0;
        outputNames = HasLogits ? [OnnxExporter.FeaturesName, OnnxExporter.LogitsName] : [OnnxExporter.FeaturesName];
    }

    /// <param name="threads">Intra-op threads; 0 lets ONNX Runtime choose.</param>
    public static OnnxInference Open(string path, int threads = 0)
    {
        if (!File.Exists(path)) throw new CheckpointException($"ONNX model '{path}' not found");
        using var options = new SessionOptions { IntraOpNumThreads = threads };
        InferenceSession session;
        try
        {
            session = new InferenceSession(path, options);
        }
        catch (OnnxRuntimeException e)
        {
            throw new CheckpointException($"'{path}': ONNX Runtime cannot load it ({e.Message})");
        }
        try
        {
            return new OnnxInference(path, session);
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    /// <summary>Runs <paramref name="batch"/> samples laid out as [batch, C, H, W] in <paramref name="pixels"/>.</summary>
    public OnnxOutputs Run(float[] pixels, int batch)
    {
        ArgumentNullException.ThrowIfNull(pixels);
        if (batch < 1 || pixels.Length != (long)batch * SampleLength)
            throw new ArgumentException($"expected {batch} × {InChans}×{ImgSize}×{ImgSize} = {(long)batch * SampleLength} floats, got {pixels.Length}");
        using var input = OrtValue.CreateTensorValueFromMemory(pixels, [batch, InChans, ImgSize, ImgSize]);
        using var runOptions = new RunOptions();
        using var results = session.Run(runOptions, [OnnxExporter.InputName], [input], outputNames);
        var features = results[0].GetTensorDataAsSpan<float>().ToArray();
        var logits = HasLogits ? results[1].GetTensorDataAsSpan<float>().ToArray() : null;
        return new OnnxOutputs(batch, FeatureDim, features, NumClasses, logits);
    }

    public void Dispose() => session.Dispose();
}
