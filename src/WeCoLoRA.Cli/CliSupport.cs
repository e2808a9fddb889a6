using System.CommandLine;
using Spectre.Console;
using WeCoLoRA.Checkpoints;
using WeCoLoRA.Data;
using WeCoLoRA.Distillation;

namespace WeCoLoRA.Cli;

/// <summary>What every command shares: one-line errors, model-loading options, progress on stderr.</summary>
static class CliSupport
{
    /// <summary>Runs a command body; a known bad input becomes one line on stderr and exit code 1.</summary>
    public static int Run(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (e is CheckpointException or ImageDecodeException or DataException or DistillationException or ArgumentException
                                      or IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"wecolora: error: {e.Message}");
            return 1;
        }
    }

    static readonly Option<bool> Strict = new("--strict") { Description = "stop at the first unusable image instead of skipping it with a warning" };
    static readonly Option<long> MaxPixels = new("--max-pixels") { Description = "refuse images with more pixels (decompression bombs)", DefaultValueFactory = _ => ImageDecoder.DefaultMaxPixels };

    /// <summary>--strict and --max-pixels, for commands that read image folders.</summary>
    public static void AddImageOptions(Command command)
    {
        command.Options.Add(Strict);
        command.Options.Add(MaxPixels);
    }

    public static bool IsStrict(ParseResult parse) => parse.GetValue(Strict);

    public static long MaxPixelsOf(ParseResult parse) => parse.GetValue(MaxPixels);

    /// <summary>The images that decode; each other one is a warning line, and the count closes the list.</summary>
    public static IReadOnlyList<ImageItem> UsableImages(IReadOnlyList<ImageItem> items, ParseResult parse)
    {
        var scan = ImageScan.Check(items, IsStrict(parse), MaxPixelsOf(parse), w => Console.Error.WriteLine($"wecolora: warning: {w}"));
        if (scan.Skipped.Count > 0)
            Console.Error.WriteLine($"wecolora: {scan.Skipped.Count} of {items.Count} images skipped (--strict makes the first one fatal)");
        return scan.Usable;
    }

    /// <summary>Progress on stderr when it is a terminal; occasional plain lines otherwise (logs stay readable).</summary>
    public static T WithProgress<T>(string label, int total, Func<IProgress<int>, T> work)
    {
        if (Console.IsErrorRedirected)
        {
            int lastPct = -1;
            return work(new Progress<int>(done =>
            {
                int pct = total == 0 ? 100 : done * 100 / total;
                if (pct / 10 == lastPct / 10 && done != total) return;
                lastPct = pct;
                Console.Error.WriteLine($"{label}: {done}/{total} ({pct}%)");
            }));
        }
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        T result = default!;
        console.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(label, maxValue: Math.Max(total, 1));
                result = work(new SyncProgress(done => task.Value = done));
            });
        return result;
    }

    // Progress<T> posts to the thread pool; the bar must see the value before the next refresh.
    sealed class SyncProgress(Action<int> report) : IProgress<int>
    {
        public void Report(int value) => report(value);
    }
}

/// <summary>--arch, --img-size, --num-heads: how a MODEL argument is read.</summary>
sealed class ModelOptions
{
    readonly Option<string?> arch = new("--arch") { Description = "timm preset (e.g. vit_base_patch16_224) for checkpoints without a config.json" };
    readonly Option<int?> imgSize = new("--img-size") { Description = "input resolution; position embeddings are resampled to it" };
    readonly Option<int?> numHeads = new("--num-heads") { Description = "attention heads, for raw state dicts whose width is not a timm preset's" };

    public void AddTo(Command command)
    {
        command.Options.Add(arch);
        command.Options.Add(imgSize);
        command.Options.Add(numHeads);
    }

    public LoadOptions Read(ParseResult parse) => new()
    {
        Arch = parse.GetValue(arch),
        ImgSize = parse.GetValue(imgSize),
        NumHeads = parse.GetValue(numHeads),
    };

    public LoadedModel Load(ParseResult parse, string model)
    {
        var loaded = ModelLoader.Load(model, Read(parse));
        foreach (var note in loaded.Notes) Console.Error.WriteLine($"wecolora: note: {note}");
        return loaded;
    }
}
