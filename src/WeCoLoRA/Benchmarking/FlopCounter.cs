using WeCoLoRA.Lora;
using WeCoLoRA.Models;

namespace WeCoLoRA.Benchmarking;

/// <summary>Matmul FLOPs (2 per multiply-add) of one distillation step, by phase.</summary>
public sealed record StepFlops(double TeacherForward, double StudentForward, double StudentBackward)
{
    public double Total => TeacherForward + StudentForward + StudentBackward;
}

/// <summary>
/// Counts the matmul FLOPs a distillation step really computes (elementwise ops, norms, softmax and the optimizer are
/// not counted, as in the usual MFU definition; attention recomputation inside a fused backward is not counted either).
/// Teacher: forward only. Student: forward, then backward. With adapters the frozen weights get no weight gradient:
/// backward is the input gradient through every frozen linear whose input needs one, plus both gradients of each
/// adapter's A and B. Block 0's input does not require grad (patch embedding, tokens and images are frozen), so neither its
/// qkv/A input gradient nor anything before it is computed. Without adapters (every weight trained) backward is twice the
/// forward, less the patch embedding's input gradient.
/// </summary>
public static class FlopCounter
{
    /// <param name="teacher">the teacher's shape (depth = teacher depth)</param>
    /// <param name="studentDepth">kept blocks</param>
    /// <param name="lora">the adapters of the student, or null when every weight trains</param>
    public static StepFlops Count(VitConfig teacher, int studentDepth, LoraSpec? lora, int batch)
    {
        double bn = (double)batch * (teacher.NumPatches + 1);
        double d = teacher.EmbedDim, h = teacher.MlpHidden;
        double patch = 2.0 * batch * teacher.NumPatches * teacher.InChans * teacher.PatchSize * teacher.PatchSize * d;
        // Per block: qkv, proj, fc1, fc2 (as (in, out)); attention QKᵀ and PV.
        (double In, double Out)[] linears = [(d, 3 * d), (d, d), (d, h), (h, d)];
        double blockLinear = linears.Sum(l => 2 * bn * l.In * l.Out);
        double attention = 2 * 2 * bn * (teacher.NumPatches + 1) * d;
        double blockForward = blockLinear + attention;

        double teacherForward = patch + teacher.Depth * blockForward;
        if (lora is null)
        {
            double fwd = patch + studentDepth * blockForward;
            return new StepFlops(teacherForward, fwd, 2 * fwd);
        }

        double r = lora.Rank;
        int qkvParts = new[] { "q", "k", "v" }.Count(lora.Targets.Contains);
        bool proj = lora.Targets.Contains("proj"), fc1 = lora.Targets.Contains("fc1"), fc2 = lora.Targets.Contains("fc2");
        // A x (stacked A's) then B (A x) per part: 2·bn·in·rank_total + 2·bn·rank·out_total.
        double Adapter(double inF, double rankTotal, double outTotal) => 2 * bn * (inF * rankTotal + r * outTotal);
        double adapterForward = (qkvParts > 0 ? Adapter(d, qkvParts * r, qkvParts * d) : 0)
            + (proj ? Adapter(d, r, d) : 0) + (fc1 ? Adapter(d, r, h) : 0) + (fc2 ? Adapter(h, r, d) : 0);
        double studentForward = patch + studentDepth * (blockForward + adapterForward);

        // Backward: follow which activations require grad. A frozen linear computes an input gradient only when its
        // input requires one; an adapter always computes B's weight and input gradients and A's weight gradient,
        // and A's input gradient when its input requires one.
        double backward = 0;
        bool live = false; // block 0's input (patch embedding + tokens) requires no grad
        double Linear(bool inputLive, double inF, double outF) => inputLive ? 2 * bn * inF * outF : 0;
        double AdapterBackward(bool inputLive, double inF, double rankTotal, double outTotal) =>
            2 * (2 * bn * r * outTotal) + (inputLive ? 2 : 1) * (2 * bn * inF * rankTotal);
        for (int block = 0; block < studentDepth; block++)
        {
            backward += Linear(live, d, 3 * d);
            if (qkvParts > 0) backward += AdapterBackward(live, d, qkvParts * r, qkvParts * d);
            bool qkvLive = live || qkvParts > 0;
            backward += qkvLive ? 2 * attention : 0; // dV = Pᵀ dO, dP = dO Vᵀ, dQ = dS K, dK = dSᵀ Q
            backward += Linear(qkvLive, d, d);
            if (proj) backward += AdapterBackward(qkvLive, d, r, d);
            bool hLive = live || qkvLive || proj;
            backward += Linear(hLive, d, h);
            if (fc1) backward += AdapterBackward(hLive, d, r, h);
            bool fc1Live = hLive || fc1;
            backward += Linear(fc1Live, h, d);
            if (fc2) backward += AdapterBackward(fc1Live, h, r, d);
            live = hLive || fc1Live || fc2;
        }
        return new StepFlops(teacherForward, studentForward, backward);
    }
}
