using System.CommandLine;
using System.Diagnostics;
using WeCoLoRA.Data;
using WeCoLoRA.Reproduction;

namespace WeCoLoRA.Cli;

static class DemoCommand
{
    public static Command Create()
    {
        var d = new DemoOptions();
        var outDir = new Option<string>("--out") { Description = "output folder (runs/, table.md, results.json)", DefaultValueFactory = _ => d.Out };
        var teacher = new Option<string?>("--teacher") { Description = "teacher model (default: the embedded Fashion-MNIST teacher, data/teacher-fashion-mnist)" };
        var train = new Option<string?>("--data") { Description = "labelled training set spec (default: full Fashion-MNIST if installed, else the embedded subset)" };
        var test = new Option<string?>("--test") { Description = "labelled test set spec (default: as --data)" };
        var ratio = new Option<double>("--ratio") { Description = "α: fraction of each class's training images used to distill", DefaultValueFactory = _ => d.Ratio };
        var r = new Option<int>("--r") { Description = "compression factor", DefaultValueFactory = _ => d.R };
        var rank = new Option<int>("--rank") { Description = "LoRA rank", DefaultValueFactory = _ => d.Rank };
        var epochs = new Option<int>("--epochs") { DefaultValueFactory = _ => d.Epochs };
        var batch = new Option<int>("--batch-size") { DefaultValueFactory = _ => d.BatchSize };
        var lr = new Option<double>("--lr") { Description = "absolute lr for WeCo+KD and WeCoLoRA alike", DefaultValueFactory = _ => d.Lr };
        var probeTrain = new Option<int>("--probe-train") { Description = "labelled train images for the probe and kNN", DefaultValueFactory = _ => d.ProbeTrain };
        var probeTest = new Option<int>("--probe-test") { Description = "labelled test images scored", DefaultValueFactory = _ => d.ProbeTest };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 0 };
        var cmd = new Command("demo", "Distill the embedded Fashion-MNIST teacher (r = 2, α = 1%) by WeCoLoRA and WeCo+KD and compare them with the teacher and WeCo only.")
        {
            outDir, teacher, train, test, ratio, r, rank, epochs, batch, lr, probeTrain, probeTest, seed,
        };
        cmd.SetAction(parse => CliSupport.Run(() =>
        {
            var o = new DemoOptions
            {
                Out = parse.GetValue(outDir)!,
                Teacher = parse.GetValue(teacher),
                Train = parse.GetValue(train),
                Test = parse.GetValue(test),
                Ratio = parse.GetValue(ratio),
                R = parse.GetValue(r),
                Rank = parse.GetValue(rank),
                Epochs = parse.GetValue(epochs),
                BatchSize = parse.GetValue(batch),
                Lr = parse.GetValue(lr),
                ProbeTrain = parse.GetValue(probeTrain),
                ProbeTest = parse.GetValue(probeTest),
                Seed = parse.GetValue(seed),
            };
            if (o.Ratio is <= 0 or > 1) throw new ArgumentException($"--ratio {o.Ratio} must be in (0, 1]");
            if (o.ProbeTrain < 1 || o.ProbeTest < 1) throw new ArgumentException("--probe-train and --probe-test must be at least 1");
            var clock = Stopwatch.StartNew();
            if (o.Train is null) Console.Error.WriteLine($"wecolora: data: {EmbeddedData.FashionMnistDescription}");
            var rows = Demo.Run(o, msg => Console.Error.WriteLine($"wecolora: {msg}"), _ => new ConsoleTrainingObserver());
            Console.WriteLine($"r = {o.R}, α = {o.Ratio:P1}, rank {o.Rank}, {o.Epochs} epochs, batch {o.BatchSize}, lr {o.Lr} (both methods); " +
                              $"probe on {o.ProbeTrain} train / {o.ProbeTest} test images");
            Console.WriteLine(Demo.Table(rows));
            Console.WriteLine($"total wall time {clock.Elapsed:m\\:ss} on {Environment.ProcessorCount} cores; written to {Path.GetFullPath(o.Out)}");
            return 0;
        }));
        return cmd;
    }
}
