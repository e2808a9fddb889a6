using WeCoLoRA.Data;
using WeCoLoRA.Models;
using static TorchSharp.torch;

namespace WeCoLoRA.Visualization;

/// <summary>Rollout maps of several models on the same images, ready for <see cref="Figures.SaveAttentionGrid"/>.</summary>
public static class AttentionFigure
{
    /// <summary>
    /// One row per image: its file name, the decoded original, and per model that model's eval preprocessing of it
    /// (<see cref="ModelPreprocess.For"/>) with the rollout map of that input.
    /// </summary>
    public static IReadOnlyList<AttentionRow> Build(IReadOnlyList<VisionTransformer> models, IReadOnlyList<string> imagePaths,
        HeadFusion fusion = HeadFusion.Mean, double discardRatio = 0.9)
    {
        if (models.Count == 0) throw new ArgumentException("give at least one model");
        if (imagePaths.Count == 0) throw new ArgumentException("give at least one image");
        var originals = imagePaths.Select(p => ImageDecoder.Decode(p)).ToList();
        var panels = originals.Select(_ => new List<AttentionPanel>()).ToList();
        foreach (var model in models)
        {
            var preprocess = ModelPreprocess.For(model.Config);
            var shown = originals.Select(preprocess.Eval).ToList();
            var pixels = new float[shown.Count * preprocess.SampleLength];
            for (int i = 0; i < shown.Count; i++)
                preprocess.Normalize(shown[i], pixels.AsSpan(i * preprocess.SampleLength, preprocess.SampleLength));
            using var batch = tensor(pixels, [shown.Count, 3, preprocess.ImgSize, preprocess.ImgSize]);
            using var maps = AttentionRollout.ForImages(model, batch, fusion, discardRatio);
            for (int i = 0; i < shown.Count; i++)
                panels[i].Add(new AttentionPanel(shown[i], maps[i].clone()));
        }
        return [.. imagePaths.Select((p, i) => new AttentionRow(Path.GetFileName(p), originals[i], panels[i]))];
    }
}
