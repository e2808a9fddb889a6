using System.CommandLine;
using WeCoLoRA.Data;
using WeCoLoRA.Reproduction;

namespace WeCoLoRA.Cli;

static class ReproduceCommand
{
    public static Command Create()
    {
        var d = new ReproduceOptions();
        var full = new Option<bool>("--full") { Description = "the whole grid (α 1% and 10%, rank 4…128, α 0.5%…25%, lr 2.5e-4…1e-2); default: a reduced grid" };
        var outDir = new Option<string>("--out") { Description = "output folder: runs/, report.md, results.json, *.png", DefaultValueFactory = _ => d.Out };
        var seeds = new Option<int>("--seeds") { Description = "seeds per cell (mean ± std)", DefaultValueFactory = _ => d.Seeds };
        var teacher = new Option<string?>("--teacher") { Description = "teacher model (default: the embedded Fashion-MNIST teacher)" };
        var train = new Option<string?>("--data") { Description = "labelled training set spec (default: full Fashion-MNIST if installed, else the embedded subset)" };
        var test = new Option<string?>("--test") { Description = "labelled test set spec" };
        var epochs = new Option<int>("--epochs") { DefaultValueFactory = _ => d.Epochs };
        var batch = new Option<int>("--batch-size") { DefaultValueFactory = _ => d.BatchSize };
        var lr = new Option<double>("--lr") { Description = "absolute lr outside the lr sweep", DefaultValueFactory = _ => d.Lr };
        var rank = new Option<int>("--rank") { Description = "LoRA rank outside the rank sweep", DefaultValueFactory = _ => d.Rank };
        var probeTrain = new Option<int>("--probe-train") { DefaultValueFactory = _ => d.ProbeTrain };
        var probeTest = new Option<int>("--probe-test") { DefaultValueFactory = _ => d.ProbeTest };
        var cmd = new Command("reproduce", "The paper's ablation grid on Fashion-MNIST: methods × α × r, and rank, data and lr sweeps; writes report.md, results.json and plots. Finished cells are reused.")
        {
            full, outDir, seeds, teacher, train, test, epochs, batch, lr, rank, probeTrain, probeTest,
        };
        cmd.SetAction(parse => CliSupport.Run(() =>
        {
            var o = new ReproduceOptions
            {
                Full = parse.GetValue(full),
                Out = parse.GetValue(outDir)!,
                Seeds = parse.GetValue(seeds),
                Teacher = parse.GetValue(teacher),
                Train = parse.GetValue(train),
                Test = parse.GetValue(test),
                Epochs = parse.GetValue(epochs),
                BatchSize = parse.GetValue(batch),
                Lr = parse.GetValue(lr),
                Rank = parse.GetValue(rank),
                ProbeTrain = parse.GetValue(probeTrain),
                ProbeTest = parse.GetValue(probeTest),
            };
            if (o.Train is null) Console.Error.WriteLine($"wecolora: data: {EmbeddedData.FashionMnistDescription}");
            Reproduce.Run(o, msg => Console.Error.WriteLine($"wecolora: {msg}"));
            Console.WriteLine(File.ReadAllText(Path.Combine(o.Out, "report.md")));
            return 0;
        }));
        return cmd;
    }
}
