using WeCoLoRA.Lora;

namespace WeCoLoRA.Checkpoints;

public static class ModelExport
{
    /// <summary>
    /// Writes a loaded model as a timm-loadable folder. With <paramref name="merge"/>, adapters are folded into the base
    /// weights (W + scaling·B·A) and the result is a plain ViT; otherwise they are kept in PEFT-style files.
    /// </summary>
    public static void ToFolder(LoadedModel loaded, string dir, bool merge)
    {
        if (merge) LoraSpec.MergeAndUnload(loaded.Model);
        ModelFiles.Save(loaded.Model, dir, merge ? null : loaded.Adapters);
    }
}
