using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using WeCoLoRA.Checkpoints;
using WeCoLoRA.Data;
using WeCoLoRA.Evaluation;
using static TorchSharp.torch;

namespace WeCoLoRA.Cli;

static class ProbeCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "checkpoint file, model folder or run folder", Required = true };
        var train = new Option<string>("--train") { Description = EvalOptions.DataHelp + " (with --multilabel: a CSV 'path,label1|label2|…')", Required = true };
        var test = new Option<string>("--test") { Description = "test data, same forms as --train", Required = true };
        var epochs = new Option<int>("--epochs") { Description = "training epochs", DefaultValueFactory = _ => 50 };
        var warmup = new Option<int>("--warmup-epochs") { Description = "linear warm-up epochs before the cosine decay", DefaultValueFactory = _ => 10 };
        var json = new Option<string?>("--json") { Description = "also write the results (top1, top5, per_class, confusion) to this JSON file" };
        var batchSize = new Option<int>("--batch-size") { Description = "probe training batch; lr = blr x batch / 256", DefaultValueFactory = _ => 512 };
        var blr = new Option<double>("--blr") { Description = "base learning rate", DefaultValueFactory = _ => 0.1 };
        var seed = new Option<int>("--seed") { Description = "seed of the head's initialisation and the shuffles", DefaultValueFactory = _ => 0 };
        var multilabel = new Option<bool>("--multilabel") { Description = "multi-label CSVs, BCE-with-logits, scored by mean AUROC" };
        var eval = new EvalOptions();
        var modelOptions = new ModelOptions();
        var cmd = new Command("probe", "Linear probing (MAE protocol) on frozen features: BatchNorm + Linear trained with LARS.")
            { model, train, test, epochs, warmup, json, batchSize, blr, seed, multilabel };
        eval.AddTo(cmd);
        modelOptions.AddTo(cmd);
        cmd.SetAction(parse => CliSupport.Run(() =>
        {
            var options = new ProbeOptions
            {
                Epochs = parse.GetValue(epochs), WarmupEpochs = parse.GetValue(warmup), BatchSize = parse.GetValue(batchSize),
                BaseLr = parse.GetValue(blr), Seed = parse.GetValue(seed),
            };
            if (options.Epochs < 1) throw new ArgumentException($"--epochs {options.Epochs} must be at least 1");
            if (options.WarmupEpochs < 0) throw new ArgumentException($"--warmup-epochs {options.WarmupEpochs} must not be negative");
            if (options.BatchSize < 1) throw new ArgumentException($"--batch-size {options.BatchSize} must be at least 1");
            if (!(options.BaseLr > 0)) throw new ArgumentException($"--blr {options.BaseLr} must be positive");
            eval.Validate(parse);
            var onEpoch = (int e, double loss) => Console.Error.WriteLine($"wecolora: probe epoch {e + 1}/{options.Epochs}: loss {loss:F4}");
            var o = new JsonObject();
            if (parse.GetValue(multilabel))
            {
                var trainSet = MultiLabelCsv.Read(parse.GetValue(train)!);
                var testSet = MultiLabelCsv.Read(parse.GetValue(test)!, trainSet.Classes);
                var loaded = modelOptions.Load(parse, parse.GetValue(model)!);
                var trainItems = eval.Limit(parse, trainSet.Items);
                var testItems = eval.Limit(parse, testSet.Items);
                using var trainF = eval.Features(parse, loaded, trainItems, "train");
                using var testF = eval.Features(parse, loaded, testItems, "test");
                using var trainY = Targets(trainSet, trainItems);
                using var testY = Targets(testSet, testItems);
                var r = LinearProbe.TrainMultiLabel(trainF, trainY, testF, testY, options, onEpoch);
                Console.WriteLine($"mean AUROC {r.MeanAuroc:F2}% over {r.PerClassAuroc.Count(a => a.HasValue)} classes ({testItems.Count} test images)");
                o["mean_auroc"] = r.MeanAuroc;
                o["classes"] = new JsonArray([.. trainSet.Classes.Select(c => (JsonNode)JsonValue.Create(c))]);
                o["per_class"] = new JsonArray([.. r.PerClassAuroc.Select(a => (JsonNode?)(a is double v ? JsonValue.Create(v) : null))]);
                o["final_loss"] = r.EpochLosses[^1];
                o["train_samples"] = trainItems.Count;
                o["test_samples"] = testItems.Count;
            }
            else
            {
                var (trainSet, testSet) = eval.OpenPair(parse, parse.GetValue(train)!, parse.GetValue(test)!);
                var loaded = modelOptions.Load(parse, parse.GetValue(model)!);
                using var trainF = eval.Features(parse, loaded, trainSet.Items, "train");
                using var testF = eval.Features(parse, loaded, testSet.Items, "test");
                var r = LinearProbe.Train(trainF, Labels(trainSet), testF, Labels(testSet), trainSet.Classes.Count, options, onEpoch);
                Console.WriteLine($"top-1 {r.Top1:F2}%");
                Console.WriteLine($"top-{r.TopK} {r.Top5:F2}%");
                o["top1"] = r.Top1;
                o["top5"] = r.Top5;
                o["top_k"] = r.TopK;
                o["classes"] = new JsonArray([.. trainSet.Classes.Select(c => (JsonNode)JsonValue.Create(c))]);
                o["per_class"] = new JsonArray([.. r.PerClass.Select(a => (JsonNode?)(a is double v ? JsonValue.Create(v) : null))]);
                o["confusion"] = new JsonArray([.. r.Confusion.Select(row => (JsonNode)new JsonArray([.. row.Select(c => (JsonNode)JsonValue.Create(c))]))]);
                o["final_loss"] = r.EpochLosses[^1];
                o["train_samples"] = trainSet.Items.Count;
                o["test_samples"] = testSet.Items.Count;
            }
            o["epochs"] = options.Epochs;
            o["batch_size"] = options.BatchSize;
            o["lr"] = options.Lr;
            o["pool"] = parse.GetValue(eval.Pool);
            o["seed"] = options.Seed;
            if (parse.GetValue(json) is string path)
            {
                File.WriteAllText(path, o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
                Console.Error.WriteLine($"wecolora: wrote {path}");
            }
            return 0;
        }));
        return cmd;
    }

    static int[] Labels(Dataset d) => [.. d.Items.Select(i => i.Label)];

    static Tensor Targets(MultiLabelDataset d, IReadOnlyList<ImageItem> items)
    {
        var rows = new Dictionary<ImageItem, int[]>(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < d.Items.Count; i++) rows[d.Items[i]] = d.Targets[i];
        var t = new float[items.Count * d.Classes.Count];
        for (int i = 0; i < items.Count; i++)
            foreach (var c in rows[items[i]]) t[i * d.Classes.Count + c] = 1;
        return tensor(t).reshape(items.Count, d.Classes.Count);
    }
}

/// <summary>What probe and knn share: --pool, --cache, --limit, --extract-batch-size; opening the data; cached feature extraction.</summary>
sealed class EvalOptions
{
    public const string DataHelp = "training data: image folder (DIR/<class>/…), idx:DIR:train|test, cifar10:DIR:train|test or cifar100:DIR:train|test";

    public readonly Option<string> Pool = new("--pool") { Description = "cls: class token after the final norm; avg: mean of patch tokens (fc_norm)", DefaultValueFactory = _ => "cls" };
    readonly Option<string?> cache = new("--cache") { Description = "folder for extracted features, reused while model, data and preprocessing are unchanged" };
    readonly Option<int?> limit = new("--limit") { Description = "use at most N evenly spaced samples of each set" };
    readonly Option<int> extractBatch = new("--extract-batch-size") { Description = "images per forward pass when extracting features", DefaultValueFactory = _ => 64 };

    public EvalOptions() => Pool.AcceptOnlyFromAmong("cls", "avg");

    public void AddTo(Command command)
    {
        command.Options.Add(Pool);
        command.Options.Add(cache);
        command.Options.Add(limit);
        command.Options.Add(extractBatch);
        CliSupport.AddImageOptions(command);
    }

    public void Validate(ParseResult parse)
    {
        if (parse.GetValue(limit) is < 1) throw new ArgumentException($"--limit {parse.GetValue(limit)} must be at least 1");
        if (parse.GetValue(extractBatch) < 1) throw new ArgumentException($"--extract-batch-size {parse.GetValue(extractBatch)} must be at least 1");
    }

    public IReadOnlyList<ImageItem> Limit(ParseResult parse, IReadOnlyList<ImageItem> items) =>
        parse.GetValue(limit) is int n ? DatasetSource.Subset(items, n) : items;

    /// <summary>Train and test sets, the test labelled by the training classes, both cut to --limit.</summary>
    public (Dataset Train, Dataset Test) OpenPair(ParseResult parse, string train, string test)
    {
        Validate(parse);
        var trainSet = DatasetSource.Open(train).Take(parse.GetValue(limit));
        var testSet = DatasetSource.Open(test).RelabelTo(trainSet.Classes, $"test data '{test}'").Take(parse.GetValue(limit));
        // Undecodable files are dropped with their labels (items carry them), each with a warning.
        return (trainSet with { Items = CliSupport.UsableImages(trainSet.Items, parse) }, testSet with { Items = CliSupport.UsableImages(testSet.Items, parse) });
    }

    public Tensor Features(ParseResult parse, LoadedModel loaded, IReadOnlyList<ImageItem> items, string what)
    {
        var kind = parse.GetValue(Pool) == "avg" ? FeatureKind.Avg : FeatureKind.Cls;
        var preprocess = ModelPreprocess.For(loaded.Config);
        bool hit = false;
        var features = CliSupport.WithProgress($"{what} features", items.Count,
            progress => FeatureCache.Extract(loaded.Model, items, preprocess, kind, parse.GetValue(extractBatch), parse.GetValue(cache), out hit, progress));
        if (hit) Console.Error.WriteLine($"wecolora: {what} features from the cache ({items.Count} x {features.shape[1]})");
        return features;
    }
}
