using System.CommandLine;
using System.Runtime.InteropServices;
using WeCoLoRA.Distillation;

namespace WeCoLoRA.Cli;

static class DistillCommand
{
    public static Command Create()
    {
        var teacher = new Option<string>("--teacher") { Description = "teacher checkpoint file, model folder or run folder", Required = true };
        var data = new Option<string>("--data") { Description = "folder of unlabeled images (class sub-folders are only used to sample per class)", Required = true };
        var outDir = new Option<string>("--out") { Description = "run folder: config.json, subset.txt, metrics.jsonl, checkpoints/, student/", Required = true };
        var method = new Option<string>("--method") { Description = "wecolora, lora-qv, weco-kd, kd-scratch or weco", DefaultValueFactory = _ => "wecolora" };
        var ratio = new Option<double>("--ratio") { Description = "fraction α of each class's images to use, in (0, 1]", DefaultValueFactory = _ => 1.0 };
        var r = new Option<int>("--r") { Description = "compression factor: keep teacher blocks 0, r, 2r, …", DefaultValueFactory = _ => 2 };
        var keep = new Option<string?>("--keep") { Description = "explicit teacher block indices to keep, e.g. 0,3,7 (overrides --r)" };
        var rank = new Option<int>("--rank") { Description = "LoRA rank", DefaultValueFactory = _ => 64 };
        var alpha = new Option<double?>("--alpha") { Description = "LoRA alpha (scaling = alpha / rank); default = rank" };
        var targets = new Option<string>("--targets") { Description = "LoRA targets for wecolora: enhanced, qv, or a comma list of q,k,v,proj,fc1,fc2", DefaultValueFactory = _ => "enhanced" };
        var align = new Option<string>("--align") { Description = "last: last block only; blocks: also each student block to the last teacher block of its group", DefaultValueFactory = _ => "last" };
        var epochs = new Option<int>("--epochs") { DefaultValueFactory = _ => 10 };
        var warmup = new Option<double>("--warmup-epochs") { DefaultValueFactory = _ => 2 };
        var batchSize = new Option<int>("--batch-size") { DefaultValueFactory = _ => 32 };
        var accum = new Option<int>("--accum-iter") { Description = "micro-batches per optimizer step", DefaultValueFactory = _ => 1 };
        var blr = new Option<double>("--blr") { Description = "base lr; lr = blr × batch × accum / 256", DefaultValueFactory = _ => 1e-3 };
        var lr = new Option<double?>("--lr") { Description = "absolute lr (overrides --blr)" };
        var minLr = new Option<double>("--min-lr") { DefaultValueFactory = _ => 0.0 };
        var wd = new Option<double>("--weight-decay") { DefaultValueFactory = _ => 0.05 };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 0 };
        var precision = new Option<string>("--precision") { Description = "fp32 or bf16 (frozen weights in bf16, adapters and optimizer state fp32)", DefaultValueFactory = _ => "fp32" };
        var noAugment = new Option<bool>("--no-augment") { Description = "eval preprocessing instead of RandomResizedCrop + flip" };
        var teacherCache = new Option<string>("--teacher-cache")
        {
            Description = "with --no-augment, where the teacher's targets are kept after epoch 1: auto (memory when they fit in a quarter of it, else a file in --out), memory, disk or off",
            DefaultValueFactory = _ => "auto",
        };
        var workers = new Option<int>("--workers") { Description = "decode threads (0 = one per core)", DefaultValueFactory = _ => 0 };
        var lanes = new Option<int>("--lanes") { Description = "shards of each batch trained side by side, each on its share of the threads (0 = one per thread)", DefaultValueFactory = _ => 0 };
        var resume = new Option<bool>("--resume") { Description = "continue the run in --out from its last checkpoint" };
        var overwrite = new Option<bool>("--overwrite") { Description = "replace the run that --out holds" };
        var cmd = new Command("distill", "Distill a teacher into a shallower student (weight copy + LoRA) on a few unlabeled images.")
        {
            teacher, data, outDir, method, ratio, r, keep, rank, alpha, targets, align, epochs, warmup, batchSize, accum,
            blr, lr, minLr, wd, seed, precision, noAugment, teacherCache, workers, lanes, resume, overwrite,
        };
        CliSupport.AddImageOptions(cmd);
        cmd.SetAction(parse => CliSupport.Run(() =>
        {
            var settings = new DistillSettings
            {
                Teacher = parse.GetValue(teacher)!,
                Data = parse.GetValue(data)!,
                Out = parse.GetValue(outDir)!,
                Method = DistillSettings.ParseEnum<DistillMethod>(parse.GetValue(method)!, "--method"),
                Ratio = parse.GetValue(ratio),
                R = parse.GetValue(r),
                Keep = parse.GetValue(keep) is { } k ? WeightCopy.ParseKeep(k, int.MaxValue) : null,
                Rank = parse.GetValue(rank),
                Alpha = parse.GetValue(alpha),
                Targets = parse.GetValue(targets)!,
                Align = DistillSettings.ParseEnum<Alignment>(parse.GetValue(align)!, "--align"),
                Epochs = parse.GetValue(epochs),
                WarmupEpochs = parse.GetValue(warmup),
                BatchSize = parse.GetValue(batchSize),
                AccumIter = parse.GetValue(accum),
                Blr = parse.GetValue(blr),
                Lr = parse.GetValue(lr),
                MinLr = parse.GetValue(minLr),
                WeightDecay = parse.GetValue(wd),
                Seed = parse.GetValue(seed),
                Precision = DistillSettings.ParseEnum<Precision>(parse.GetValue(precision)!, "--precision"),
                NoAugment = parse.GetValue(noAugment),
                TeacherCache = DistillSettings.ParseEnum<TeacherCacheMode>(parse.GetValue(teacherCache)!, "--teacher-cache"),
                Workers = parse.GetValue(workers),
                Lanes = parse.GetValue(lanes),
                Strict = CliSupport.IsStrict(parse),
                MaxPixels = CliSupport.MaxPixelsOf(parse),
            };
            // First SIGINT/SIGTERM: finish the step, checkpoint, exit 130. A second one: the default, exit at once
            // (checkpoints are written to a temporary folder and renamed, so none is left half-written).
            using var interrupt = new CancellationTokenSource();
            void OnSignal(PosixSignalContext ctx)
            {
                if (interrupt.IsCancellationRequested) return;
                ctx.Cancel = true;
                interrupt.Cancel();
                Console.Error.WriteLine("\nwecolora: stopping after this step to write a checkpoint (signal again to stop at once)");
            }
            using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
            using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
            try
            {
                var student = new Distiller(settings, new ConsoleTrainingObserver()).Run(parse.GetValue(resume), parse.GetValue(overwrite), interrupt.Token);
                Console.Error.WriteLine($"wecolora: student written to {student}");
                return 0;
            }
            catch (RunInterruptedException e)
            {
                var args = parse.Tokens.Select(t => t.Value.Contains(' ') ? $"'{t.Value}'" : t.Value).ToList();
                if (!parse.GetValue(resume)) args.Add("--resume");
                Console.Error.WriteLine($"wecolora: {e.Message}; continue with: ./wecolora {string.Join(' ', args)}");
                return 130;
            }
        }));
        return cmd;
    }
}
