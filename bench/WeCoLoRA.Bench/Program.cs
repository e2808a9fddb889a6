using WeCoLoRA.Benchmarking;

// The distillation-step benchmark without the CLI: same flags as `wecolora bench` (no --vs-reference), e.g.
//   dotnet run --project bench/WeCoLoRA.Bench -c Release -- --model vit_base_patch16_224 --precision bf16 --steps 5 --warmup 2 --json
try
{
    bool json = args.Contains("--json");
    var options = BenchOptions.Parse(args.Where(a => a != "--json").ToArray());
    var result = StepBenchmark.Run(options, m => Console.Error.WriteLine($"bench: {m}"));
    Console.WriteLine(json ? result.ToJson().ToJsonString() : result.ToText());
    return 0;
}
catch (ArgumentException e)
{
    Console.Error.WriteLine($"WeCoLoRA.Bench: error: {e.Message}");
    return 1;
}
