using System.CommandLine;
using WeCoLoRA.Visualization;

namespace WeCoLoRA.Cli;

static class AttentionCommand
{
    public static Command Create()
    {
        var models = new Option<string[]>("--model") { Description = "checkpoint file, model folder or run folder; repeat for more columns", Required = true };
        var images = new Option<string[]>("--images") { Description = "image files, one row each", Required = true, AllowMultipleArgumentsPerToken = true };
        var outFile = new Option<string>("--out") { Description = "output .png file", Required = true };
        var fusion = new Option<string>("--head-fusion") { Description = "how each block's heads are combined", DefaultValueFactory = _ => "mean" };
        fusion.AcceptOnlyFromAmong("mean", "max", "min");
        var discard = new Option<double>("--discard-ratio") { Description = "fraction of each block's lowest attention weights set to zero, in [0, 1)", DefaultValueFactory = _ => 0.9 };
        var cellSize = new Option<int>("--cell-size") { Description = "displayed size of each image in pixels", DefaultValueFactory = _ => 224 };
        var modelOptions = new ModelOptions();
        var cmd = new Command("attention", "Attention rollout maps of one or more models on images, side by side, as a PNG.")
            { models, images, outFile, fusion, discard, cellSize };
        modelOptions.AddTo(cmd);
        cmd.SetAction(parse => CliSupport.Run(() =>
        {
            if (parse.GetValue(cellSize) is < 16 or > 2048) throw new ArgumentException($"--cell-size {parse.GetValue(cellSize)} must be in 16–2048");
            var paths = parse.GetValue(images)!;
            foreach (var p in paths)
                if (!File.Exists(p)) throw new ArgumentException($"--images: '{p}' is not a file");
            var modelArgs = parse.GetValue(models)!;
            var loaded = modelArgs.Select(m => modelOptions.Load(parse, m).Model).ToList();
            var headFusion = Enum.Parse<HeadFusion>(parse.GetValue(fusion)!, ignoreCase: true);
            var rows = AttentionFigure.Build(loaded, paths, headFusion, parse.GetValue(discard));
            var names = modelArgs.Select(m => Path.GetFileName(Path.TrimEndingDirectorySeparator(m))).ToList();
            var path = parse.GetValue(outFile)!;
            Figures.SaveAttentionGrid(path, names, rows, parse.GetValue(cellSize));
            Console.Error.WriteLine($"wecolora: wrote {path}: {paths.Length} images x {modelArgs.Length} models ({headFusion.ToString().ToLowerInvariant()} fusion, discard {parse.GetValue(discard)})");
            return 0;
        }));
        return cmd;
    }
}
