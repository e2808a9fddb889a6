using System.CommandLine;
using System.Text.Json.Nodes;
using WeCoLoRA.Benchmarking;
using WeCoLoRA.Distillation;

namespace WeCoLoRA.Cli;

static class BenchCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "timm preset of the random-weight teacher (comma list with --vs-reference)", DefaultValueFactory = _ => "vit_small_patch16_224" };
        var r = new Option<int>("--r") { Description = "keep teacher blocks 0, r, 2r, …", DefaultValueFactory = _ => 2 };
        var rank = new Option<int>("--rank") { Description = "LoRA rank", DefaultValueFactory = _ => 64 };
        var batch = new Option<int>("--batch") { DefaultValueFactory = _ => 32 };
        var precision = new Option<string>("--precision") { Description = "fp32 or bf16 (comma list with --vs-reference)", DefaultValueFactory = _ => "fp32" };
        var steps = new Option<int>("--steps") { Description = "timed steps (the median is reported)", DefaultValueFactory = _ => 10 };
        var warmup = new Option<int>("--warmup") { DefaultValueFactory = _ => 3 };
        var threads = new Option<int>("--threads") { Description = "intra-op threads (0 = every core)", DefaultValueFactory = _ => 0 };
        var lanes = new Option<int>("--lanes") { Description = "shards of each batch run side by side, each on its share of the threads (0 = one per thread on CPU)", DefaultValueFactory = _ => 0 };
        var data = new Option<string?>("--data") { Description = "image folder read through the training loader with augmentation (default: random tensors)" };
        var workers = new Option<int>("--workers") { Description = "decode threads for --data (0 = one per core)", DefaultValueFactory = _ => 0 };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 0 };
        var noPeak = new Option<bool>("--no-peak") { Description = "skip the matmul peak measurement (no MFU)" };
        var peakSize = new Option<int>("--peak-size") { Description = "side of the square matmuls timed for the peak", DefaultValueFactory = _ => 2048 };
        var json = new Option<bool>("--json") { Description = "print one JSON object (img_per_s and step_ms as the peer, plus phases, FLOPs, MFU, RSS)" };
        var vsReference = new Option<bool>("--vs-reference") { Description = "alternate runs of ours and the peer's distill_step_bench.py and print the ratio" };
        var pairs = new Option<int>("--pairs") { Description = "ours/peer run pairs per configuration with --vs-reference", DefaultValueFactory = _ => 3 };
        var reference = new Option<string?>("--reference") { Description = $"the peer script (default: ${ReferenceComparison.ReferenceEnv}, else shared/reference/{ReferenceComparison.ReferenceFile} above the repo)" };
        var python = new Option<string>("--python") { Description = "interpreter for the peer", DefaultValueFactory = _ => "/usr/bin/python3" };
        var cmd = new Command("bench", "Time the distillation step (teacher fwd, student fwd, L1, backward, AdamW) on a random-weight teacher; optionally against the PyTorch peer.")
        {
            model, r, rank, batch, precision, steps, warmup, threads, lanes, data, workers, seed, noPeak, peakSize, json, vsReference, pairs, reference, python,
        };
        cmd.SetAction(parse => CliSupport.Run(() =>
        {
            var models = parse.GetValue(model)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            var precisions = parse.GetValue(precision)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(p => DistillSettings.ParseEnum<Precision>(p, "--precision")).ToArray();
            var configs = (from m in models from p in precisions
                           select new BenchOptions
                           {
                               Model = m, R = parse.GetValue(r), Rank = parse.GetValue(rank), Batch = parse.GetValue(batch), Precision = p,
                               Steps = parse.GetValue(steps), Warmup = parse.GetValue(warmup), Threads = parse.GetValue(threads), Lanes = parse.GetValue(lanes),
                               Data = parse.GetValue(data), Workers = parse.GetValue(workers), Seed = parse.GetValue(seed),
                               MeasurePeak = !parse.GetValue(noPeak), PeakSize = parse.GetValue(peakSize),
                           }.Validate()).ToList();
            bool asJson = parse.GetValue(json);
            if (!parse.GetValue(vsReference))
            {
                if (configs.Count != 1) throw new ArgumentException("--model and --precision take one value each without --vs-reference");
                var result = StepBenchmark.Run(configs[0], m => Console.Error.WriteLine($"bench: {m}"));
                Console.WriteLine(asJson ? result.ToJson().ToJsonString() : result.ToText());
                return 0;
            }
            if (parse.GetValue(pairs) < 1) throw new ArgumentException($"--pairs {parse.GetValue(pairs)} must be at least 1");
            var script = ReferenceComparison.Locate(parse.GetValue(reference));
            var self = ReferenceComparison.Self("bench");
            var results = new JsonArray();
            foreach (var config in configs)
            {
                Console.Error.WriteLine($"bench: {config.Model} {parse.GetValue(precision)} vs {script}");
                var c = ReferenceComparison.Run(config, parse.GetValue(pairs), self, parse.GetValue(python)!, script, m => Console.Error.WriteLine($"bench: {m}"));
                if (asJson) results.Add(c.ToJson());
                else Console.WriteLine(c.ToText());
            }
            if (asJson) Console.WriteLine(new JsonObject { ["comparisons"] = results }.ToJsonString());
            return 0;
        }));
        return cmd;
    }
}
