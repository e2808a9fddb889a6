using System.CommandLine;
using System.Text.Json;
using WeCoLoRA.Checkpoints;
using WeCoLoRA.Data;
using WeCoLoRA.Evaluation;

namespace WeCoLoRA.Cli;

static class EmbedCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "checkpoint file, model folder or run folder", Required = true };
        var data = new Option<string>("--data") { Description = "folder of images (searched recursively), or idx:DIR:train|test, cifar10:DIR:train|test, cifar100:DIR:train|test", Required = true };
        var outFile = new Option<string>("--out") { Description = "output .safetensors file", Required = true };
        var pool = new Option<string>("--pool") { Description = "cls: class token after norm; avg: mean of patch tokens; tokens: last block output before the final norm", DefaultValueFactory = _ => "cls" };
        pool.AcceptOnlyFromAmong("cls", "avg", "tokens");
        var cropPct = new Option<double?>("--crop-pct") { Description = "override the model's crop_pct (resize to img_size / crop_pct, then center crop)" };
        var batchSize = new Option<int>("--batch-size") { Description = "images per forward pass", DefaultValueFactory = _ => 64 };
        var modelOptions = new ModelOptions();
        var cmd = new Command("embed", "Write the features of every image in a folder to a safetensors file.") { model, data, outFile, pool, cropPct, batchSize };
        modelOptions.AddTo(cmd);
        CliSupport.AddImageOptions(cmd);
        cmd.SetAction(parse => CliSupport.Run(() =>
        {
            if (parse.GetValue(batchSize) < 1) throw new ArgumentException($"--batch-size {parse.GetValue(batchSize)} must be at least 1");
            var items = CliSupport.UsableImages(DatasetSource.OpenUnlabeled(parse.GetValue(data)!), parse);
            var loaded = modelOptions.Load(parse, parse.GetValue(model)!);
            var kind = parse.GetValue(pool) switch { "avg" => FeatureKind.Avg, "tokens" => FeatureKind.Tokens, _ => FeatureKind.Cls };
            var preprocess = ModelPreprocess.For(loaded.Config, parse.GetValue(cropPct));
            using var features = CliSupport.WithProgress("embed", items.Count,
                progress => FeatureExtractor.Extract(loaded.Model, items, preprocess, kind, parse.GetValue(batchSize), progress));
            var metadata = new Dictionary<string, string> { ["paths"] = JsonSerializer.Serialize(items.Select(i => i.RelativePath)) };
            var path = parse.GetValue(outFile)!;
            SafeTensors.Save(path, [new("features", features)], metadata);
            Console.Error.WriteLine($"wecolora: wrote {path}: features [{string.Join(", ", features.shape)}] for {items.Count} images");
            return 0;
        }));
        return cmd;
    }
}
