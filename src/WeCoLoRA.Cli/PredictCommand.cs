using System.CommandLine;
using System.Globalization;
using System.Text;
using WeCoLoRA.Checkpoints;
using WeCoLoRA.Data;
using WeCoLoRA.Export;
using WeCoLoRA.Models;
using static TorchSharp.torch;

namespace WeCoLoRA.Cli;

/// <summary>
/// `predict`: top-k classes (models with a head) or pooled features (headless models) for every image in a folder,
/// from an exported model.onnx (ONNX Runtime) or any checkpoint the loader reads (TorchSharp).
/// </summary>
static class PredictCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "model.onnx (with its config.json beside it), or a checkpoint file, model folder or run folder", Required = true };
        var data = new Option<string>("--data") { Description = "folder of images (searched recursively)", Required = true };
        var top = new Option<int>("--top") { Description = "classes shown per image", DefaultValueFactory = _ => 5 };
        var csv = new Option<string?>("--csv") { Description = "also write the results to this CSV file (headless models: the features; without --csv they go to stdout)" };
        var batchSize = new Option<int>("--batch-size") { Description = "images per forward pass", DefaultValueFactory = _ => 32 };
        var modelOptions = new ModelOptions();
        var cmd = new Command("predict", "Classify the images in a folder (top-k classes), or write their features when the model has no head.") { model, data, top, csv, batchSize };
        modelOptions.AddTo(cmd);
        cmd.SetAction(parse => CliSupport.Run(() =>
        {
            int k = parse.GetValue(top), size = parse.GetValue(batchSize);
            if (k < 1) throw new ArgumentException($"--top {k} must be at least 1");
            if (size < 1) throw new ArgumentException($"--batch-size {size} must be at least 1");
            var items = ImageFolders.ListAll(parse.GetValue(data)!);
            var modelArg = parse.GetValue(model)!;
            bool isOnnx = modelArg.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase);
            if (isOnnx && modelOptions.Read(parse) is { } o && (o.Arch ?? (object?)o.ImgSize ?? o.NumHeads) is not null)
                throw new ArgumentException("--arch, --img-size and --num-heads apply to checkpoints; an exported .onnx model is fixed (its config.json gives the preprocessing)");
            using var runner = isOnnx
                ? OnnxRunner.Open(modelArg)
                : (Runner)new TorchRunner(modelOptions.Load(parse, modelArg), ModelSource.Resolve(modelArg).ConfigPath);
            var preprocess = ModelPreprocess.For(runner.Config);
            var (features, logits) = CliSupport.WithProgress("predict", items.Count, progress => runner.Run(items, preprocess, size, progress));
            var paths = items.Select(i => i.RelativePath).ToList();
            if (logits is not null)
            {
                var labels = runner.Labels ?? Enumerable.Range(0, runner.Config.NumClasses).Select(i => i.ToString(CultureInfo.InvariantCulture)).ToList();
                var rows = paths.Select((p, i) => (Path: p, Top: TopK(logits[i], k))).ToList();
                PrintTable(rows, labels);
                if (parse.GetValue(csv) is { } file)
                    WriteCsv(file, "image,rank,class_index,class,probability",
                        rows.SelectMany(r => r.Top.Select((t, rank) => string.Join(",", Csv(r.Path), rank + 1, t.Index, Csv(labels[t.Index]), F(t.Probability)))));
            }
            else
            {
                var header = "image," + string.Join(",", Enumerable.Range(0, features[0].Length).Select(i => $"f{i}"));
                var lines = paths.Select((p, i) => Csv(p) + "," + string.Join(",", features[i].Select(F)));
                if (parse.GetValue(csv) is { } file) WriteCsv(file, header, lines);
                else
                {
                    Console.Out.WriteLine(header);
                    foreach (var line in lines) Console.Out.WriteLine(line);
                }
            }
            return 0;
        }));
        return cmd;
    }

    /// <summary>The k most probable classes (softmax over the logits), most probable first.</summary>
    internal static List<(int Index, double Probability)> TopK(float[] logits, int k)
    {
        double max = logits.Max();
        var exp = logits.Select(l => Math.Exp(l - max)).ToArray();
        double sum = exp.Sum();
        return exp.Select((e, i) => (Index: i, Probability: e / sum))
            .OrderByDescending(t => t.Probability).ThenBy(t => t.Index).Take(k).ToList();
    }

    static void PrintTable(List<(string Path, List<(int Index, double Probability)> Top)> rows, IReadOnlyList<string> labels)
    {
        int pathWidth = Math.Max(5, rows.Max(r => r.Path.Length));
        int classWidth = Math.Max(5, rows.SelectMany(r => r.Top).Select(t => labels[t.Index].Length).DefaultIfEmpty(0).Max());
        var o = Console.Out;
        o.WriteLine($"{"image".PadRight(pathWidth)}  rank  {"class".PadRight(classWidth)}  probability");
        foreach (var (path, top) in rows)
            for (int rank = 0; rank < top.Count; rank++)
                o.WriteLine($"{(rank == 0 ? path : "").PadRight(pathWidth)}  {rank + 1,4}  {labels[top[rank].Index].PadRight(classWidth)}  {top[rank].Probability.ToString("F4", CultureInfo.InvariantCulture),11}");
    }

    static void WriteCsv(string file, string header, IEnumerable<string> lines)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(file))!;
        Directory.CreateDirectory(dir);
        using var w = new StreamWriter(file, false, new UTF8Encoding(false));
        w.WriteLine(header);
        foreach (var line in lines) w.WriteLine(line);
        Console.Error.WriteLine($"wecolora: wrote {file}");
    }

    static string F(double v) => v.ToString("G9", CultureInfo.InvariantCulture);
    static string F(float v) => v.ToString("G9", CultureInfo.InvariantCulture);

    static string Csv(string s) => s.IndexOfAny([',', '"', '\n', '\r']) < 0 ? s : "\"" + s.Replace("\"", "\"\"") + "\"";

    /// <summary>One way of running a model over preprocessed batches.</summary>
    abstract class Runner : IDisposable
    {
        public abstract VitConfig Config { get; }
        public abstract IReadOnlyList<string>? Labels { get; }
        protected abstract (float[] Features, float[]? Logits, int FeatureDim, int NumClasses) Forward(Tensor images, int n);

        /// <summary>Per image: the feature row and, with a head, the logit row (null logits when there is none).</summary>
        public (float[][] Features, float[][]? Logits) Run(IReadOnlyList<ImageItem> items, Preprocess preprocess, int batchSize, IProgress<int> progress)
        {
            var features = new float[items.Count][];
            float[][]? logits = null;
            using var loader = BatchLoader.ForPreprocess(items, batchSize, preprocess);
            int done = 0;
            foreach (var batch in loader.GetBatches())
            {
                using var _ = batch;
                int n = batch.Indices.Length;
                var (f, l, dim, classes) = Forward(batch.Images, n);
                for (int j = 0; j < n; j++)
                {
                    int item = batch.Indices[j];
                    features[item] = f.AsSpan(j * dim, dim).ToArray();
                    if (l is not null)
                    {
                        logits ??= new float[items.Count][];
                        logits[item] = l.AsSpan(j * classes, classes).ToArray();
                    }
                }
                done += n;
                progress.Report(done);
            }
            return (features, logits);
        }

        public abstract void Dispose();
    }

    sealed class OnnxRunner(OnnxInference onnx, VitConfig config, IReadOnlyList<string>? labels) : Runner
    {
        public override VitConfig Config => config;
        public override IReadOnlyList<string>? Labels => labels;

        public static OnnxRunner Open(string path)
        {
            var configPath = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, OnnxExporter.ConfigFileName);
            if (!File.Exists(path)) throw new CheckpointException($"ONNX model '{path}' not found");
            if (!File.Exists(configPath))
                throw new CheckpointException($"'{path}': no {OnnxExporter.ConfigFileName} beside it to give the preprocessing (wecolora export --format onnx writes one)");
            var onnx = OnnxInference.Open(path);
            try
            {
                var cfg = ConfigFiles.Apply(configPath, new VitConfig());
                if (cfg.ImgSize != onnx.ImgSize || cfg.InChans != onnx.InChans)
                    throw new CheckpointException($"{configPath}: says {cfg.InChans}×{cfg.ImgSize}×{cfg.ImgSize} input but '{path}' takes {onnx.InChans}×{onnx.ImgSize}×{onnx.ImgSize}");
                return new OnnxRunner(onnx, cfg with { NumClasses = onnx.NumClasses }, LabelNames.Read(configPath, onnx.NumClasses));
            }
            catch
            {
                onnx.Dispose();
                throw;
            }
        }

        protected override (float[], float[]?, int, int) Forward(Tensor images, int n)
        {
            var r = onnx.Run(images.data<float>().ToArray(), n);
            return (r.Features, r.Logits, r.FeatureDim, r.NumClasses);
        }

        public override void Dispose() => onnx.Dispose();
    }

    sealed class TorchRunner(LoadedModel loaded, string? configPath) : Runner
    {
        public override VitConfig Config => loaded.Config;
        public override IReadOnlyList<string>? Labels { get; } = LabelNames.Read(configPath, loaded.Config.NumClasses);

        protected override (float[], float[]?, int, int) Forward(Tensor images, int n)
        {
            var model = loaded.Model;
            using var mode = inference_mode();
            using var scope = NewDisposeScope();
            var features = model.Pool(model.ForwardTokens(images)).to(float32).contiguous();
            var logits = model.HasHead ? model.head.call(features).to(float32).contiguous() : null;
            return (features.data<float>().ToArray(), logits?.data<float>().ToArray(), (int)features.shape[1], model.Config.NumClasses);
        }

        public override void Dispose() => loaded.Model.Dispose();
    }
}
