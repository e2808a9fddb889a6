using System.CommandLine;
using System.Globalization;
using WeCoLoRA.Training;

namespace WeCoLoRA.Cli;

static class PretrainCommand
{
    public static Command Create()
    {
        var data = new Option<string>("--data") { Description = "labelled training data: folder with class sub-folders, idx:DIR:train, cifar10:DIR:train, …", Required = true };
        var test = new Option<string?>("--test") { Description = "labelled test data, evaluated once at the end" };
        var outDir = new Option<string>("--out") { Description = "run folder: config.json, metrics.jsonl, checkpoints/, model/, results.json", Required = true };
        var arch = new Option<string?>("--arch") { Description = "timm preset the architecture starts from (e.g. vit_tiny_patch16_224)" };
        var modelArgs = new Option<string?>("--model-args") { Description = "timm model_args k=v,… e.g. img_size=28,patch_size=4,embed_dim=128,depth=12,num_heads=4" };
        var init = new Option<string?>("--init") { Description = "model to fine-tune instead of training from scratch (head replaced if the class count differs)" };
        var epochs = new Option<int>("--epochs") { DefaultValueFactory = _ => 10 };
        var warmup = new Option<double>("--warmup-epochs") { DefaultValueFactory = _ => 1 };
        var batchSize = new Option<int>("--batch-size") { DefaultValueFactory = _ => 128 };
        var blr = new Option<double>("--blr") { Description = "base lr; lr = blr × batch / 256", DefaultValueFactory = _ => 1e-3 };
        var lr = new Option<double?>("--lr") { Description = "absolute lr (overrides --blr)" };
        var minLr = new Option<double>("--min-lr") { DefaultValueFactory = _ => 0.0 };
        var wd = new Option<double>("--weight-decay") { DefaultValueFactory = _ => 0.05 };
        var smoothing = new Option<double>("--label-smoothing") { DefaultValueFactory = _ => 0.1 };
        var beta2 = new Option<double>("--beta2") { Description = "AdamW beta2", DefaultValueFactory = _ => 0.999 };
        var padding = new Option<int?>("--crop-padding") { Description = "random crop with N pixels of padding + flip instead of RandomResizedCrop + flip (small images)" };
        var mean = new Option<string?>("--mean") { Description = "normalization mean, 1 or 3 comma values (default: measured on the training images)" };
        var std = new Option<string?>("--std") { Description = "normalization std, 1 or 3 comma values (default: measured on the training images)" };
        var limit = new Option<int?>("--limit") { Description = "train on at most N images (evenly spaced over the set)" };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 0 };
        var workers = new Option<int>("--workers") { Description = "decode threads (0 = one per core)", DefaultValueFactory = _ => 0 };
        var resume = new Option<bool>("--resume") { Description = "continue the run in --out from its last checkpoint" };
        var overwrite = new Option<bool>("--overwrite") { Description = "replace the run that --out holds" };
        var cmd = new Command("pretrain", "Supervised training of a ViT on a labelled dataset, from scratch (timm init) or from a checkpoint.")
        {
            data, test, outDir, arch, modelArgs, init, epochs, warmup, batchSize, blr, lr, minLr, wd, smoothing, beta2, padding,
            mean, std, limit, seed, workers, resume, overwrite,
        };
        cmd.SetAction(parse => CliSupport.Run(() =>
        {
            var settings = new PretrainSettings
            {
                Data = parse.GetValue(data)!,
                Test = parse.GetValue(test),
                Out = parse.GetValue(outDir)!,
                Arch = parse.GetValue(arch),
                ModelArgs = parse.GetValue(modelArgs),
                Init = parse.GetValue(init),
                Epochs = parse.GetValue(epochs),
                WarmupEpochs = parse.GetValue(warmup),
                BatchSize = parse.GetValue(batchSize),
                Blr = parse.GetValue(blr),
                Lr = parse.GetValue(lr),
                MinLr = parse.GetValue(minLr),
                WeightDecay = parse.GetValue(wd),
                LabelSmoothing = parse.GetValue(smoothing),
                Beta2 = parse.GetValue(beta2),
                CropPadding = parse.GetValue(padding),
                Mean = Floats(parse.GetValue(mean), "--mean"),
                Std = Floats(parse.GetValue(std), "--std"),
                Limit = parse.GetValue(limit),
                Seed = parse.GetValue(seed),
                Workers = parse.GetValue(workers),
            };
            var result = new Pretrainer(settings, new ConsoleTrainingObserver()).Run(parse.GetValue(resume), parse.GetValue(overwrite));
            if (result.TestAccuracy is double acc)
                Console.WriteLine($"test accuracy {acc * 100:F2}% on {result.TestImages} images");
            Console.Error.WriteLine($"wecolora: model written to {result.ModelDir} ({result.Elapsed:hh\\:mm\\:ss})");
            return 0;
        }));
        return cmd;
    }

    static float[]? Floats(string? text, string option)
    {
        if (text is null) return null;
        try
        {
            return text.Split(',', StringSplitOptions.TrimEntries).Select(v => float.Parse(v, NumberStyles.Float, CultureInfo.InvariantCulture)).ToArray();
        }
        catch (FormatException)
        {
            throw new ArgumentException($"{option} '{text}' must be comma-separated numbers, e.g. 0.2860");
        }
    }
}
