using WeCoLoRA.Checkpoints;
using WeCoLoRA.Data;
using WeCoLoRA.Evaluation;
using static TorchSharp.torch;

namespace WeCoLoRA.Tests.Evaluation;

/// <summary>The README's C# snippet (the path a .NET application follows) compiles and agrees with the model's logits.</summary>
public sealed class ReadmeSnippetTests
{
    [Fact]
    public void The_readme_snippet_classifies_like_the_model()
    {
        var student = ModelLoader.Load(Fixture.Path("models", "timm_hub"));
        var images = DatasetSource.OpenUnlabeled(Fixture.Path("models", "images"));
        var pre = ModelPreprocess.For(student.Config);
        using var features = FeatureExtractor.Extract(student.Model, images, pre, FeatureKind.Cls);
        using var probs = student.Model.head.call(features).softmax(-1);
        long predicted = probs[0].argmax().item<long>();

        using var loader = BatchLoader.ForPreprocess(images, images.Count, pre);
        using var batch = loader.GetBatches().Single();
        using var _ = inference_mode();
        using var logits = student.Model.call(batch.Images);
        Assert.Equal(logits[0].argmax().item<long>(), predicted);
    }
}
