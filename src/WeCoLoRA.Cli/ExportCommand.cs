using System.CommandLine;
using WeCoLoRA.Checkpoints;
using WeCoLoRA.Export;

namespace WeCoLoRA.Cli;

static class ExportCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "run folder, student folder or any supported checkpoint", Required = true };
        var outDir = new Option<string>("--out") { Description = "output folder (model.safetensors + config.json)", Required = true };
        var noMerge = new Option<bool>("--no-merge") { Description = "keep LoRA adapters separate (adapter_model.safetensors + adapter_config.json, PEFT-style names)" };
        var format = new Option<string>("--format") { Description = "safetensors (timm folder) or onnx (model.onnx + config.json)", DefaultValueFactory = _ => "safetensors" };
        format.AcceptOnlyFromAmong("safetensors", "onnx");
        var fp16 = new Option<bool>("--fp16") { Description = "onnx only: float16 weights and compute (float32 inputs and outputs)" };
        var modelOptions = new ModelOptions();
        var cmd = new Command("export", "Write a student (adapters merged: a plain timm ViT) or any supported ViT as timm safetensors + config.json.") { model, outDir, noMerge, format, fp16 };
        modelOptions.AddTo(cmd);
        cmd.SetAction(parse => CliSupport.Run(() =>
        {
            bool onnx = parse.GetValue(format) == "onnx";
            if (onnx && parse.GetValue(noMerge)) throw new ArgumentException("--no-merge applies to safetensors exports; an ONNX graph always has the adapters folded in");
            if (!onnx && parse.GetValue(fp16)) throw new ArgumentException("--fp16 applies to --format onnx");
            var loaded = modelOptions.Load(parse, parse.GetValue(model)!);
            var dir = parse.GetValue(outDir)!;
            if (onnx)
            {
                var path = OnnxExporter.ExportFolder(loaded.Model, dir, parse.GetValue(fp16));
                Console.Error.WriteLine($"wecolora: wrote {path} (opset {OnnxExporter.Opset}, {(parse.GetValue(fp16) ? "fp16" : "fp32")}, dynamic batch)");
                return 0;
            }
            ModelExport.ToFolder(loaded, dir, merge: !parse.GetValue(noMerge));
            Console.Error.WriteLine($"wecolora: wrote {dir} ({loaded.Config.Architecture}, depth {loaded.Config.Depth}{(loaded.Adapters is null ? "" : parse.GetValue(noMerge) ? ", adapters kept" : ", adapters merged")})");
            return 0;
        }));
        return cmd;
    }
}
