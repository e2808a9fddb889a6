using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace WeCoLoRA.Cli;

static class InspectCommand
{
    public static Command Create()
    {
        var model = new Argument<string>("MODEL") { Description = "checkpoint file, model folder or run folder" };
        var json = new Option<bool>("--json") { Description = "print one JSON object" };
        var modelOptions = new ModelOptions();
        var cmd = new Command("inspect", "Show a model's architecture, parameter count and preprocessing.") { model, json };
        modelOptions.AddTo(cmd);
        cmd.SetAction(parse => CliSupport.Run(() =>
        {
            var loaded = modelOptions.Load(parse, parse.GetValue(model)!);
            var c = loaded.Config;
            long parameters = loaded.Model.parameters().Sum(p => p.numel());
            if (parse.GetValue(json))
            {
                var o = new JsonObject
                {
                    ["architecture"] = c.Architecture,
                    ["format"] = loaded.Format.ToString(),
                    ["weights"] = loaded.WeightsPath,
                    ["img_size"] = c.ImgSize,
                    ["patch_size"] = c.PatchSize,
                    ["in_chans"] = c.InChans,
                    ["embed_dim"] = c.EmbedDim,
                    ["depth"] = c.Depth,
                    ["num_heads"] = c.NumHeads,
                    ["mlp_ratio"] = c.MlpRatio,
                    ["qkv_bias"] = c.QkvBias,
                    ["global_pool"] = c.GlobalPool.ToString().ToLowerInvariant(),
                    ["num_classes"] = c.NumClasses,
                    ["params"] = parameters,
                    ["mean"] = new JsonArray([.. c.Mean.Select(v => (JsonNode)JsonValue.Create(v))]),
                    ["std"] = new JsonArray([.. c.Std.Select(v => (JsonNode)JsonValue.Create(v))]),
                    ["crop_pct"] = c.CropPct,
                    ["interpolation"] = c.Interpolation,
                    ["adapters"] = loaded.Adapters is { } a
                        ? new JsonObject { ["rank"] = a.Rank, ["alpha"] = a.Alpha, ["targets"] = new JsonArray([.. a.Targets.Select(t => (JsonNode)t)]) }
                        : null,
                };
                Console.WriteLine(o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
                return 0;
            }
            Console.WriteLine($"architecture   {c.Architecture} ({loaded.Format} checkpoint {loaded.WeightsPath})");
            Console.WriteLine($"parameters     {parameters:N0}");
            Console.WriteLine($"input          {c.InChans}x{c.ImgSize}x{c.ImgSize}, patch {c.PatchSize} ({c.NumPatches} patches + class token)");
            Console.WriteLine($"blocks         {c.Depth} x (dim {c.EmbedDim}, {c.NumHeads} heads, mlp {c.MlpHidden}, qkv bias {c.QkvBias.ToString().ToLowerInvariant()})");
            Console.WriteLine($"pooling        {c.GlobalPool.ToString().ToLowerInvariant()}{(c.NumClasses > 0 ? $", head with {c.NumClasses} classes" : ", no head")}");
            if (loaded.Adapters is { } spec)
                Console.WriteLine($"adapters       LoRA rank {spec.Rank}, alpha {spec.Alpha} on {string.Join(",", spec.Targets)} (unmerged; `export` folds them in)");
            Console.WriteLine($"preprocessing  mean [{string.Join(", ", c.Mean)}] std [{string.Join(", ", c.Std)}], crop_pct {c.CropPct}, {c.Interpolation}");
            return 0;
        }));
        return cmd;
    }
}
