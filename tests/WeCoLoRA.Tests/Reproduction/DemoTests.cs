using System.Text.Json.Nodes;
using WeCoLoRA.Models;
using WeCoLoRA.Reproduction;

namespace WeCoLoRA.Tests.Reproduction;

/// <summary>The demo pipeline on the tiny 32-px fixture teacher (depth 3) and a dozen images.</summary>
public sealed class DemoTests
{
    [Fact]
    public void The_demo_scores_teacher_weco_wecokd_and_wecolora_and_writes_its_table()
    {
        var data = Fixture.MakeTwoClassData();
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

public sealed class ReproduceTests
{
    [Fact]
    public void A_small_grid_writes_the_report_results_and_plots_with_mean_and_std_over_seeds()
    {
        var root = Fixture.TempDir();
        var images = Directory.GetFiles(Fixture.Path("models", "images"), "*.png", SearchOption.AllDirectories).Order().ToArray();
        foreach (var cls in new[] { "x", "y" })
        {
            Directory.CreateDirectory(Path.Combine(root, cls));
            for (int i = 0; i < 6; i++) File.Copy(images[(i + cls.Length) % images.Length], Path.Combine(root, cls, $"{i}.png"));
        }
        var grid = new Grid([WeCoLoRA.Distillation.DistillMethod.Weco, WeCoLoRA.Distillation.DistillMethod.WeCoLoRA], [0.01], [2], [2], [0.01], [1e-3]);
        var o = new ReproduceOptions
        {
            Out = Path.Combine(Fixture.TempDir(), "repro"), Teacher = Fixture.Path("models", "timm_hub"), Train = root, Test = root,
            Epochs = 1, BatchSize = 4, Rank = 2, Lr = 1e-3, Seeds = 2, ProbeTrain = 12, ProbeTest = 12, Grid = grid,
        };
        var (_, cells) = Reproduce.Run(o);
        Assert.Equal(5, cells.Count); // weco once; wecolora and (lr sweep) weco-kd per seed
        var report = File.ReadAllText(Path.Combine(o.Out, "report.md"));
        Assert.Contains("| WeCoLoRA (copy + enhanced LoRA) | ", report);
        Assert.Contains(" ± ", report);
        foreach (var png in new[] { "accuracy_vs_rank.png", "accuracy_vs_alpha.png", "accuracy_vs_lr.png", "loss_curves.png" })
        {
            var bytes = File.ReadAllBytes(Path.Combine(o.Out, png));
            Assert.Equal(0x89, bytes[0]);
            Assert.Equal((byte)'P', bytes[1]);
        }
        Assert.Equal(3, System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(o.Out, "results.json")))!["cells"]!.AsArray().Count - 2);
    }

    [Fact]
    public void The_reduced_grid_holds_every_method_at_both_r_and_the_three_sweeps()
    {
        var cells = Grid.Reduced.Cells(1, 16, 5e-4);
        Assert.Equal(10, cells.Count(c => c.Ratio == 0.01 && c.Rank == 16 && c.Lr == 5e-4)); // 5 methods × r {2, 3}
        Assert.Equal(cells.Count, cells.Distinct().Count());
        Assert.Contains(new Cell(WeCoLoRA.Distillation.DistillMethod.WeCoLoRA, 0.01, 2, 64, 5e-4, 0), cells);
        Assert.Contains(new Cell(WeCoLoRA.Distillation.DistillMethod.WecoKd, 0.005, 2, 16, 5e-4, 0), cells);
        Assert.Contains(new Cell(WeCoLoRA.Distillation.DistillMethod.WecoKd, 0.01, 2, 16, 1e-2, 0), cells);
        Assert.True(Grid.Full.Cells(1, 16, 5e-4).Count > cells.Count);
    }
}
