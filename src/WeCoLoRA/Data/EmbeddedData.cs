namespace WeCoLoRA.Data;

/// <summary>
/// The data and teacher that ship with the repository (data/), and the one decision of which Fashion-MNIST to use:
/// the full set when it is installed at <see cref="FullFashionMnistDir"/>, else the committed stratified subset
/// (6,000 train / 1,000 test, data/fashion-mnist-subset).
/// </summary>
public static class EmbeddedData
{
    public const string FullFashionMnistDir = "/usr/share/datasets/fashion-mnist";
    public const string SubsetName = "fashion-mnist-subset";
    public const string TeacherName = "teacher-fashion-mnist";

    /// <summary>Overrides where data/ is looked for (a folder holding fashion-mnist-subset/ and teacher-fashion-mnist/).</summary>
    public const string DataDirVariable = "WECOLORA_DATA_DIR";

    /// <summary>True when the full Fashion-MNIST is installed (both splits).</summary>
    public static bool HasFullFashionMnist =>
        File.Exists(Path.Combine(FullFashionMnistDir, "train-images-idx3-ubyte.gz")) && File.Exists(Path.Combine(FullFashionMnistDir, "t10k-images-idx3-ubyte.gz"));

    /// <summary>A <see cref="DatasetSource"/> spec for a Fashion-MNIST split ("train" or "test"): the full set if installed, else the embedded subset.</summary>
    public static string FashionMnist(string split)
    {
        if (split is not ("train" or "test")) throw new ArgumentException($"Fashion-MNIST split '{split}' unknown; use train or test");
        return $"idx:{(HasFullFashionMnist ? FullFashionMnistDir : Path.Combine(DataDir(), SubsetName))}:{split}";
    }

    /// <summary>Says which Fashion-MNIST <see cref="FashionMnist"/> picks, for reports.</summary>
    public static string FashionMnistDescription => HasFullFashionMnist
        ? $"full Fashion-MNIST ({FullFashionMnistDir})"
        : "embedded Fashion-MNIST subset (6,000 train / 1,000 test, data/fashion-mnist-subset)";

    /// <summary>The embedded teacher's model folder (data/teacher-fashion-mnist).</summary>
    public static string Teacher => Path.Combine(DataDir(), TeacherName);

    /// <summary>
    /// The repository's data/ folder: $WECOLORA_DATA_DIR, else the first data/ holding the subset found walking up from
    /// the executable's folder, then from the current directory.
    /// </summary>
    public static string DataDir()
    {
        if (Environment.GetEnvironmentVariable(DataDirVariable) is { Length: > 0 } env)
            return Directory.Exists(env) ? Path.GetFullPath(env) : throw new DataException($"{DataDirVariable}={env} is not a folder");
        foreach (var start in new[] { AppContext.BaseDirectory, Environment.CurrentDirectory })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "data");
                if (Directory.Exists(Path.Combine(candidate, SubsetName))) return candidate;
            }
        throw new DataException($"the embedded data/ folder (with {SubsetName}/) was not found above {AppContext.BaseDirectory} or {Environment.CurrentDirectory}; set {DataDirVariable}");
    }
}
