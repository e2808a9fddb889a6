using WeCoLoRA.Distillation;

namespace WeCoLoRA.Reproduction;

/// <summary>The report's PNG plots (ScottPlot): accuracy vs rank, vs α, vs lr, and loss curves.</summary>
public static class Plots
{
    public static void Write(string dir, Grid grid, ReproduceOptions o, IReadOnlyList<Score> s)
    {
        Sweep(Path.Combine(dir, "accuracy_vs_rank.png"), "Accuracy vs LoRA rank (WeCoLoRA, r = 2, α = 1%)", "rank (log2)",
            [(DistillMethod.WeCoLoRA, grid.Ranks.Select(k => ((double)k, s.Where(x => Is(x, DistillMethod.WeCoLoRA, 0.01, k, o.Lr)).ToArray())).ToArray())], Math.Log2);
        Sweep(Path.Combine(dir, "accuracy_vs_alpha.png"), "Accuracy vs α (r = 2)", "α % (log10)",
            [.. new[] { DistillMethod.WecoKd, DistillMethod.WeCoLoRA }.Select(m => (m, grid.DataRatios.Select(a => (a * 100, s.Where(x => Is(x, m, a, o.Rank, o.Lr)).ToArray())).ToArray()))], Math.Log10);
        Sweep(Path.Combine(dir, "accuracy_vs_lr.png"), "Accuracy vs lr (r = 2, α = 1%)", "lr (log10)",
            [.. new[] { DistillMethod.WecoKd, DistillMethod.WeCoLoRA }.Select(m => (m, grid.Lrs.Append(o.Lr).Distinct().Order().Select(l => (l, s.Where(x => Is(x, m, 0.01, o.Rank, l)).ToArray())).ToArray()))], Math.Log10);
        Losses(Path.Combine(dir, "loss_curves.png"), s.Where(x => x.Cell!.Seed == 0 && x.Cell.R == 2 && x.Cell.Ratio == 0.01 && x.Cell.Rank == o.Rank && x.Cell.Lr == o.Lr && x.Losses.Length > 0).ToList());
    }

    static bool Is(Score x, DistillMethod m, double a, int rank, double lr) =>
        x.Cell!.Method == m && x.Cell.Ratio == a && x.Cell.R == 2 && x.Cell.Rank == rank && x.Cell.Lr == lr;

    static void Sweep(string path, string title, string xLabel, (DistillMethod Method, (double X, Score[] Runs)[] Points)[] series, Func<double, double> xScale)
    {
        var plt = new ScottPlot.Plot();
        var ticks = new SortedDictionary<double, string>();
        foreach (var (method, points) in series)
        {
            var done = points.Where(p => p.Runs.Length > 0).ToArray();
            if (done.Length == 0) continue;
            var xs = done.Select(p => xScale(p.X)).ToArray();
            var ys = done.Select(p => p.Runs.Average(r => r.Probe)).ToArray();
            var err = done.Select(p => p.Runs.Length < 2 ? 0 : Std(p.Runs.Select(r => r.Probe).ToArray())).ToArray();
            var line = plt.Add.Scatter(xs, ys);
            line.LegendText = Cell.Label(method);
            if (err.Any(e => e > 0)) plt.Add.ErrorBar(xs, ys, err);
            foreach (var p in done) ticks[xScale(p.X)] = p.X.ToString("G3", System.Globalization.CultureInfo.InvariantCulture);
        }
        if (ticks.Count > 0) plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual([.. ticks.Keys], [.. ticks.Values]);
        plt.Title(title);
        plt.XLabel(xLabel.Split(' ')[0]);
        plt.YLabel("linear probe top-1 %");
        plt.ShowLegend();
        plt.SavePng(path, 640, 420);
    }

    static void Losses(string path, List<Score> runs)
    {
        var plt = new ScottPlot.Plot();
        foreach (var r in runs)
        {
            var line = plt.Add.Scatter(Enumerable.Range(1, r.Losses.Length).Select(i => (double)i).ToArray(), r.Losses);
            line.LegendText = Cell.Label(r.Cell!.Method);
            line.MarkerSize = 0;
        }
        plt.Title("Distillation loss (L1), r = 2, α = 1%");
        plt.XLabel("optimizer step");
        plt.YLabel("loss");
        plt.ShowLegend();
        plt.SavePng(path, 640, 420);
    }

    static double Std(double[] v)
    {
        double m = v.Average();
        return Math.Sqrt(v.Sum(x => (x - m) * (x - m)) / (v.Length - 1));
    }
}
