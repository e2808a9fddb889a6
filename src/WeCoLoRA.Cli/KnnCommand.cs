using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using WeCoLoRA.Evaluation;

namespace WeCoLoRA.Cli;

static class KnnCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "checkpoint file, model folder or run folder", Required = true };
        var train = new Option<string>("--train") { Description = EvalOptions.DataHelp, Required = true };
        var test = new Option<string>("--test") { Description = "test data, same forms as --train", Required = true };
        var k = new Option<int>("--k") { Description = "neighbours that vote", DefaultValueFactory = _ => 20 };
        var temperature = new Option<double>("--temperature") { Description = "vote weight exp(cosine / T)", DefaultValueFactory = _ => 0.07 };
        var json = new Option<string?>("--json") { Description = "also write the results (top1, top5, k) to this JSON file" };
        var eval = new EvalOptions();
        var modelOptions = new ModelOptions();
        var cmd = new Command("knn", "Weighted k-NN classification (DINO's protocol) on frozen features.") { model, train, test, k, temperature, json };
        eval.AddTo(cmd);
        modelOptions.AddTo(cmd);
        cmd.SetAction(parse => CliSupport.Run(() =>
        {
            if (parse.GetValue(k) < 1) throw new ArgumentException($"--k {parse.GetValue(k)} must be at least 1");
            if (!(parse.GetValue(temperature) > 0)) throw new ArgumentException($"--temperature {parse.GetValue(temperature)} must be positive");
            var (trainSet, testSet) = eval.OpenPair(parse, parse.GetValue(train)!, parse.GetValue(test)!);
            var loaded = modelOptions.Load(parse, parse.GetValue(model)!);
            using var trainF = eval.Features(parse, loaded, trainSet.Items, "train");
            using var testF = eval.Features(parse, loaded, testSet.Items, "test");
            var r = Knn.Classify(trainF, [.. trainSet.Items.Select(i => i.Label)], testF, [.. testSet.Items.Select(i => i.Label)],
                trainSet.Classes.Count, parse.GetValue(k), parse.GetValue(temperature));
            int topK = Math.Min(5, trainSet.Classes.Count);
            Console.WriteLine($"top-1 {r.Top1:F2}%");
            Console.WriteLine($"top-{topK} {r.Top5:F2}%");
            if (parse.GetValue(json) is string path)
            {
                var o = new JsonObject
                {
                    ["top1"] = r.Top1, ["top5"] = r.Top5, ["top_k"] = topK, ["k"] = r.K, ["temperature"] = parse.GetValue(temperature),
                    ["pool"] = parse.GetValue(eval.Pool), ["train_samples"] = trainSet.Items.Count, ["test_samples"] = testSet.Items.Count,
                };
                File.WriteAllText(path, o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
                Console.Error.WriteLine($"wecolora: wrote {path}");
            }
            return 0;
        }));
        return cmd;
    }
}
