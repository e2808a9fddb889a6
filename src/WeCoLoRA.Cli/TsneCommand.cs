using System.CommandLine;
using System.Globalization;
using System.Text;
using WeCoLoRA.Data;
using WeCoLoRA.Evaluation;
using WeCoLoRA.Visualization;

namespace WeCoLoRA.Cli;

static class TsneCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "checkpoint file, model folder or run folder", Required = true };
        var data = new Option<string>("--data") { Description = "class folders (DIR/<class>/…) or any folder of images, or idx:DIR:train|test, cifar10:DIR:train|test, cifar100:DIR:train|test", Required = true };
        var outFile = new Option<string>("--out") { Description = "output .png; the coordinates go to the same name with .csv", Required = true };
        var max = new Option<int>("--max") { Description = "at most this many images, evenly spaced over the data", DefaultValueFactory = _ => 5000 };
        var perplexity = new Option<double>("--perplexity") { Description = "t-SNE perplexity (less than the number of images)", DefaultValueFactory = _ => 30 };
        var seed = new Option<long>("--seed") { Description = "seed of the random init", DefaultValueFactory = _ => 0 };
        var init = new Option<string>("--init") { Description = "pca (scikit-learn's default) or random", DefaultValueFactory = _ => "pca" };
        init.AcceptOnlyFromAmong("pca", "random");
        var iterations = new Option<int>("--iterations") { Description = "gradient-descent iterations, the 250 exaggerated ones included", DefaultValueFactory = _ => 1000 };
        var pool = new Option<string>("--pool") { Description = "cls: class token after norm; avg: mean of patch tokens", DefaultValueFactory = _ => "cls" };
        pool.AcceptOnlyFromAmong("cls", "avg");
        var batchSize = new Option<int>("--batch-size") { Description = "images per forward pass", DefaultValueFactory = _ => 64 };
        var modelOptions = new ModelOptions();
        var cmd = new Command("tsne", "Exact t-SNE of a model's pooled features, as a scatter coloured by class (PNG) and coordinates (CSV).")
            { model, data, outFile, max, perplexity, seed, init, iterations, pool, batchSize };
        modelOptions.AddTo(cmd);
        cmd.SetAction(parse => CliSupport.Run(() =>
        {
            if (parse.GetValue(max) < 2) throw new ArgumentException($"--max {parse.GetValue(max)} must be at least 2");
            if (parse.GetValue(batchSize) < 1) throw new ArgumentException($"--batch-size {parse.GetValue(batchSize)} must be at least 1");
            var spec = parse.GetValue(data)!;
            var dataset = OpenData(spec).Take(parse.GetValue(max));
            var items = dataset.Items;
            if (items.Count <= parse.GetValue(perplexity))
                throw new ArgumentException($"--perplexity {parse.GetValue(perplexity)} must be less than the number of images ({items.Count}); lower it");
            var loaded = modelOptions.Load(parse, parse.GetValue(model)!);
            var kind = parse.GetValue(pool) == "avg" ? FeatureKind.Avg : FeatureKind.Cls;
            using var features = CliSupport.WithProgress("embed", items.Count,
                progress => FeatureExtractor.Extract(loaded.Model, items, ModelPreprocess.For(loaded.Config), kind, parse.GetValue(batchSize), progress));
            var options = new TsneOptions
            {
                Perplexity = parse.GetValue(perplexity),
                Seed = parse.GetValue(seed),
                Init = parse.GetValue(init) == "random" ? TsneInit.Random : TsneInit.Pca,
                Iterations = parse.GetValue(iterations),
            };
            var result = CliSupport.WithProgress("t-SNE", options.Iterations, progress => Tsne.Fit(features, options, progress));
            using var embedding = result.Embedding;
            var path = parse.GetValue(outFile)!;
            var labels = items.Select(i => i.Label).ToList();
            var classes = labels.All(l => l >= 0) ? dataset.Classes : null;
            var title = $"{Path.GetFileName(Path.TrimEndingDirectorySeparator(parse.GetValue(model)!))}: t-SNE of {parse.GetValue(pool)} features ({items.Count} images, perplexity {options.Perplexity})";
            Figures.SaveScatter(path, embedding, labels, classes, title);
            var csv = Path.ChangeExtension(path, ".csv");
            WriteCsv(csv, items, classes, embedding.data<float>().ToArray());
            Console.Error.WriteLine($"wecolora: wrote {path} and {csv}: {items.Count} images, KL {result.Kl:F4} after {result.Iterations} iterations");
            return 0;
        }));
        return cmd;
    }

    /// <summary>Labelled when the data is a prefixed dataset or a folder of class folders only; otherwise every image, unlabelled.</summary>
    static Dataset OpenData(string spec)
    {
        if (DatasetSource.IsPrefixed(spec)) return DatasetSource.Open(spec);
        bool classFolders = Directory.Exists(spec) && Directory.EnumerateDirectories(spec).Any()
                            && !Directory.EnumerateFiles(spec).Any(ImageFolders.IsImageFile);
        return classFolders ? DatasetSource.Open(spec) : new Dataset(DatasetSource.OpenUnlabeled(spec), []);
    }

    static void WriteCsv(string path, IReadOnlyList<ImageItem> items, IReadOnlyList<string>? classes, float[] xy)
    {
        var sb = new StringBuilder("path,label,x,y\n");
        for (int i = 0; i < items.Count; i++)
        {
            var label = classes is null ? "" : classes[items[i].Label];
            sb.Append(Quote(items[i].RelativePath)).Append(',').Append(Quote(label)).Append(',')
              .Append(xy[2 * i].ToString("R", CultureInfo.InvariantCulture)).Append(',')
              .Append(xy[2 * i + 1].ToString("R", CultureInfo.InvariantCulture)).Append('\n');
        }
        File.WriteAllText(path, sb.ToString());
    }

    static string Quote(string field) =>
        field.IndexOfAny([',', '"', '\n', '\r']) < 0 ? field : "\"" + field.Replace("\"", "\"\"") + "\"";
}
