using System.CommandLine;
using WeCoLoRA.Checkpoints;

namespace WeCoLoRA.Cli;

static class ExportCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "run folder, student folder or any supported checkpoint", Required = true };
        var outDir = new Option<string>("--out") { Description = "output folder (model.safetensors + config.json)", Required = true };
        var noMerge = new Option<bool>("--no-merge") { Description = "keep LoRA adapters separate (adapter_model.safetensors + adapter_config.json, PEFT-style names)" };
        var modelOptions = new ModelOptions();
        var cmd = new Command("export", "Write a student (adapters merged: a plain timm ViT) or any supported ViT as timm safetensors + config.json.") { model, outDir, noMerge };
        modelOptions.AddTo(cmd);
        cmd.SetAction(parse => CliSupport.Run(() =>
        {
            var loaded = modelOptions.Load(parse, parse.GetValue(model)!);
            var dir = parse.GetValue(outDir)!;
            ModelExport.ToFolder(loaded, dir, merge: !parse.GetValue(noMerge));
            Console.Error.WriteLine($"wecolora: wrote {dir} ({loaded.Config.Architecture}, depth {loaded.Config.Depth}{(loaded.Adapters is null ? "" : parse.GetValue(noMerge) ? ", adapters kept" : ", adapters merged")})");
            return 0;
        }));
        return cmd;
    }
}
