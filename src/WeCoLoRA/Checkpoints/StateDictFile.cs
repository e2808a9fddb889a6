using TorchSharp;

namespace WeCoLoRA.Checkpoints;

/// <summary>Loads a state dict from either format, chosen by content rather than extension.</summary>
public static class StateDictFile
{
    /// <summary>Zip magic "PK" → <see cref="TorchPickle"/>; anything else → <see cref="SafeTensors"/>.</summary>
    public static Dictionary<string, torch.Tensor> Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        Span<byte> magic = stackalloc byte[4];
        int n;
        try
        {
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 16);
            n = fs.ReadAtLeast(magic, 4, throwOnEndOfStream: false);
        }
        catch (FileNotFoundException) { throw new CheckpointException($"'{path}': file not found; check the path"); }
        catch (DirectoryNotFoundException) { throw new CheckpointException($"'{path}': directory not found; check the path"); }

        if (n >= 2 && magic[0] == (byte)'P' && magic[1] == (byte)'K') return TorchPickle.LoadStateDict(path);
        // Legacy files start with PROTO 2 and LONG1 of torch's magic number; as a safetensors header length those four
        // bytes would exceed the 100 MB header limit, so this cannot misfire on a valid safetensors file.
        if (n == 4 && magic[0] == 0x80 && magic[1] == 0x02 && magic[2] == 0x8a && magic[3] == 0x0a)
            throw new CheckpointException($"'{path}': this is a legacy (pre-1.6, non-zip) torch.save file, which is not supported; re-save it with a current torch.save");
        return SafeTensors.Load(path);
    }
}
