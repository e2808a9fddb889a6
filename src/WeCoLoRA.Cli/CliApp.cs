using System.CommandLine;
using WeCoLoRA.Runtime;

namespace WeCoLoRA.Cli;

/// <summary>The `wecolora` command tree; tests call <see cref="Run"/> in-process.</summary>
public static class CliApp
{
    public static int Run(string[] args)
    {
        NativeHeap.RetainFreedMemory(); // every command moves tensors; see NativeHeap
        var root = new RootCommand("WeCoLoRA.NET: few-shot distillation of Vision Transformers by weight copy and low-rank adaptation.")
        {
            InspectCommand.Create(),
            EmbedCommand.Create(),
            DistillCommand.Create(),
            PretrainCommand.Create(),
            DemoCommand.Create(),
            ReproduceCommand.Create(),
            ExportCommand.Create(),
            PredictCommand.Create(),
            ProbeCommand.Create(),
            KnnCommand.Create(),
            AttentionCommand.Create(),
            TsneCommand.Create(),
            BenchCommand.Create(),
        };
        return root.Parse(args).Invoke();
    }
}
