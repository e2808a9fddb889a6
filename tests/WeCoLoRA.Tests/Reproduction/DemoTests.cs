using System.Text.Json.Nodes;
using WeCoLoRA.Models;
using WeCoLoRA.Reproduction;

namespace WeCoLoRA.Tests.Reproduction;

/// <summary>The demo pipeline on the tiny 32-px fixture teacher (depth 3) and a dozen images.</summary>
public sealed class DemoTests
{
    static string MakeData()
    {
        var root = Fixture.TempDir();
        var images = Directory.GetFiles(Fixture.Path("models", "images"), "*.png", SearchOption.AllDirectories).Order().ToArray();
        foreach (var cls in new[] { "x", "y" })
        {
            Directory.CreateDirectory(Path.Combine(root, cls));
            for (int i = 0; i < 6; i++) File.Copy(images[(i + cls.Length) % images.Length], Path.Combine(root, cls, $"{i}.png"));
        }
        return root;
    }

    [Fact]
    public void The_demo_scores_teacher_weco_wecokd_and_wecolora_and_writes_its_table()
    {
        var data = MakeData();
        var o = new DemoOptions
        {
            Out = Path.Combine(Fixture.TempDir(), "demo"), Teacher = Fixture.Path("models", "timm_hub"), Train = data, Test = data,
            Ratio = 0.5, Rank = 2, Epochs = 1, BatchSize = 4, ProbeTrain = 12, ProbeTest = 12,
        };
        var rows = Demo.Run(o);
        Assert.Equal(["Teacher", "WeCo only", "WeCo + KD", "WeCoLoRA (copy + enhanced LoRA)"], rows.Select(r => r.Name));
        Assert.Equal([3, 2, 2, 2], rows.Select(r => r.Depth));
        Assert.All(rows, r => Assert.InRange(r.Probe, 0, 100));
        Assert.Equal(0, rows[1].TrainableParams);
        Assert.True(rows[3].TrainableParams < rows[2].TrainableParams);
        Assert.Equal(rows[1].Params, rows[3].Params); // merged LoRA student = plain ViT of the same shape
        Assert.Equal(6, rows[2].Images);
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(o.Out, "results.json")))!;
        Assert.Equal(4, json["rows"]!.AsArray().Count);
        Assert.Contains("| WeCo + KD |", File.ReadAllText(Path.Combine(o.Out, "table.md")));
        // A second run reuses the finished students.
        var again = Demo.Run(o);
        Assert.Equal(rows.Select(r => r.Probe), again.Select(r => r.Probe));
    }

    [Fact]
    public void The_parameter_count_formula_matches_a_built_model()
    {
        foreach (var cfg in new[] { VitPresets.Get("vit_tiny_patch16_224"), new VitConfig { ImgSize = 28, PatchSize = 4, EmbedDim = 128, Depth = 6, NumHeads = 4, NumClasses = 10 } })
        {
            using var model = new VisionTransformer(cfg);
            Assert.Equal(model.parameters().Sum(p => p.numel()), Experiment.Count(cfg));
        }
    }
}
