namespace WeCoLoRA.Data;

/// <summary>Labelled samples and the class names their labels index.</summary>
public sealed record Dataset(IReadOnlyList<ImageItem> Items, IReadOnlyList<string> Classes)
{
    /// <summary>
    /// The same samples labelled by <paramref name="classes"/> (matched by name), so that a test set's labels agree with the
    /// training set's; a class that <paramref name="classes"/> lacks is a <see cref="DataException"/> naming it.
    /// </summary>
    public Dataset RelabelTo(IReadOnlyList<string> classes, string what)
    {
        if (Classes.SequenceEqual(classes)) return this;
        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < classes.Count; i++) index.TryAdd(classes[i], i);
        var map = new int[Classes.Count];
        for (int i = 0; i < Classes.Count; i++)
            map[i] = index.TryGetValue(Classes[i], out var j) ? j : -1;
        var items = new List<ImageItem>(Items.Count);
        foreach (var item in Items)
        {
            int label = map[item.Label];
            if (label < 0)
                throw new DataException($"{what}: class '{Classes[item.Label]}' is not among the training classes.");
            items.Add(item with { Label = label });
        }
        return new Dataset(items, classes);
    }

    /// <summary>At most <paramref name="limit"/> samples, evenly spaced (index ⌊i·N/limit⌋), so every class stays represented.</summary>
    public Dataset Take(int? limit) => limit is int n && n < Items.Count ? new Dataset(DatasetSource.Subset(Items, n), Classes) : this;
}

/// <summary>
/// Turns a data argument into samples the <see cref="BatchLoader"/> can load. Accepted forms:
/// <list type="bullet">
/// <item><c>DIR</c> — a folder of images: torchvision ImageFolder (<c>DIR/&lt;class&gt;/…</c>) when labelled
/// (<see cref="ImageFolders.ListClasses"/>), every image below it when not (<see cref="ImageFolders.ListAll"/>).
/// An existing folder always wins over the prefixes below.</item>
/// <item><c>idx:DIR:train</c> / <c>idx:DIR:test</c> — MNIST-family IDX files in DIR: <c>train-images-idx3-ubyte</c> +
/// <c>train-labels-idx1-ubyte</c>, or <c>t10k-images-idx3-ubyte</c> + <c>t10k-labels-idx1-ubyte</c> (<c>t10k</c> is accepted
/// for <c>test</c>); each may end in <c>.gz</c>, and <c>-idx</c> may be spelled <c>.idx</c>. The split is the text after the
/// last ':'. Class names: the 10 Fashion-MNIST names when DIR's name contains "fashion", otherwise the label numbers.</item>
/// <item><c>cifar10:DIR:train|test</c> — CIFAR-10 binary version: <c>data_batch_1.bin</c> … <c>data_batch_5.bin</c> or
/// <c>test_batch.bin</c> in DIR or DIR/cifar-10-batches-bin; names from <c>batches.meta.txt</c> or the standard ones.</item>
/// <item><c>cifar100:DIR:train|test</c> — CIFAR-100 binary version: <c>train.bin</c> / <c>test.bin</c> in DIR or
/// DIR/cifar-100-binary; records carry (coarse, fine) labels and the fine label (100 classes) is used; names from
/// <c>fine_label_names.txt</c> or the standard ones.</item>
/// </list>
/// IDX and CIFAR samples are decoded into memory once and served through <see cref="IImageSource"/>; grayscale becomes RGB
/// by replication. Every problem is a one-line <see cref="DataException"/> naming the argument or the file.
/// </summary>
public static class DatasetSource
{
    public static readonly string[] FashionMnistClasses =
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

    public static readonly string[] Cifar10Classes =
        ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

    public static readonly string[] Cifar100Classes = ("apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy " +
        "bridge bus butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup " +
        "dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard " +
        "lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck " +
        "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper " +
        "snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor train trout " +
        "tulip turtle wardrobe whale willow_tree wolf woman worm").Split(' ');

    /// <summary>True when <paramref name="spec"/> names an in-memory dataset (an <c>idx:</c>/<c>cifar10:</c>/<c>cifar100:</c> prefix).</summary>
    public static bool IsPrefixed(string spec) =>
        !Directory.Exists(spec) && (spec.StartsWith("idx:", StringComparison.Ordinal) || spec.StartsWith("cifar10:", StringComparison.Ordinal)
                                    || spec.StartsWith("cifar100:", StringComparison.Ordinal));

    /// <summary>Labelled samples of <paramref name="spec"/> (see the class summary for the accepted forms).</summary>
    public static Dataset Open(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (!IsPrefixed(spec))
        {
            var (items, classes) = ImageFolders.ListClasses(spec);
            return new Dataset(items, classes);
        }
        int colon = spec.IndexOf(':');
        string scheme = spec[..colon];
        var (dir, split) = SplitArgument(spec, spec[(colon + 1)..]);
        return scheme switch
        {
            "idx" => OpenIdx(spec, dir, split),
            "cifar10" => OpenCifar(spec, dir, split, cifar100: false),
            _ => OpenCifar(spec, dir, split, cifar100: true),
        };
    }

    /// <summary>Samples for unlabelled use: every image below a folder (labels -1), or all samples of a prefixed dataset (labelled).</summary>
    public static IReadOnlyList<ImageItem> OpenUnlabeled(string spec) =>
        IsPrefixed(spec) ? Open(spec).Items : ImageFolders.ListAll(spec);

    /// <summary>At most <paramref name="limit"/> items, evenly spaced: item ⌊i·N/limit⌋ for i = 0 … limit−1.</summary>
    public static IReadOnlyList<ImageItem> Subset(IReadOnlyList<ImageItem> items, int limit)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(limit);
        if (limit >= items.Count) return items;
        var result = new ImageItem[limit];
        for (int i = 0; i < limit; i++)
            result[i] = items[(int)((long)i * items.Count / limit)];
        return result;
    }

    private static (string Dir, bool Train) SplitArgument(string spec, string rest)
    {
        int last = rest.LastIndexOf(':');
        string split = last < 0 ? "" : rest[(last + 1)..];
        bool? train = split switch { "train" => true, "test" or "t10k" => false, _ => null };
        if (train is null)
            throw new DataException($"Data argument '{spec}' needs a split: {spec[..(spec.IndexOf(':') + 1)]}DIR:train or …:test.");
        string dir = rest[..last];
        if (dir.Length == 0 || !Directory.Exists(dir))
            throw new DataException($"Dataset folder '{dir}' (from '{spec}') does not exist.");
        return (Path.GetFullPath(dir), train.Value);
    }

    private static Dataset OpenIdx(string spec, string dir, bool train)
    {
        string prefix = train ? "train" : "t10k";
        string imagesPath = FindIdx(dir, prefix, "images", 3), labelsPath = FindIdx(dir, prefix, "labels", 1);
        var images = IdxFile.Read(imagesPath);
        var labels = IdxFile.Read(labelsPath);
        if (images.Dims.Length != 3)
            throw new DataException($"IDX file '{imagesPath}' has {images.Dims.Length} dimensions; images need 3 (count, rows, columns).");
        if (labels.Dims.Length != 1)
            throw new DataException($"IDX file '{labelsPath}' has {labels.Dims.Length} dimensions; labels need 1.");
        if (labels.Count != images.Count)
            throw new DataException($"IDX file '{labelsPath}' has {labels.Count} labels but '{imagesPath}' has {images.Count} images.");

        bool fashion = Path.GetFileName(dir).Contains("fashion", StringComparison.OrdinalIgnoreCase);
        int maxLabel = labels.Data.Max();
        string[] classes = fashion ? FashionMnistClasses : [.. Enumerable.Range(0, Math.Max(maxLabel + 1, 10)).Select(i => i.ToString())];
        if (maxLabel >= classes.Length)
            throw new DataException($"IDX file '{labelsPath}' has label {maxLabel}, but Fashion-MNIST has {classes.Length} classes.");

        var source = new GrayImageSource(images.Data, images.Count, images.Dims[1], images.Dims[2], DatasetFiles.Identity(imagesPath, labelsPath));
        string split = train ? "train" : "test";
        return new Dataset(Items(source, $"idx:{dir}:{split}", split, i => labels.Data[i]), classes);
    }

    private static string FindIdx(string dir, string prefix, string kind, int ndim)
    {
        foreach (var sep in new[] { "-", "." })
            foreach (var gz in new[] { "", ".gz" })
            {
                var p = Path.Combine(dir, $"{prefix}-{kind}{sep}idx{ndim}-ubyte{gz}");
                if (File.Exists(p)) return p;
            }
        throw new DataException($"IDX file '{Path.Combine(dir, $"{prefix}-{kind}-idx{ndim}-ubyte")}[.gz]' not found.");
    }

    private static Dataset OpenCifar(string spec, string dir, bool train, bool cifar100)
    {
        string sub = cifar100 ? "cifar-100-binary" : "cifar-10-batches-bin";
        string[] Files(string d) => cifar100
            ? [Path.Combine(d, train ? "train.bin" : "test.bin")]
            : train
                ? [.. Directory.GetFiles(d, "data_batch_*.bin").Order(StringComparer.Ordinal)]
                : [Path.Combine(d, "test_batch.bin")];
        var files = Files(dir).Where(File.Exists).ToArray();
        if (files.Length == 0 && Directory.Exists(Path.Combine(dir, sub)))
        {
            dir = Path.Combine(dir, sub);
            files = Files(dir).Where(File.Exists).ToArray();
        }
        if (files.Length == 0)
        {
            string expected = cifar100 ? (train ? "train.bin" : "test.bin") : train ? "data_batch_1.bin … data_batch_5.bin" : "test_batch.bin";
            throw new DataException($"CIFAR file '{Path.Combine(dir, expected)}' not found (also looked in '{sub}').");
        }

        int labelBytes = cifar100 ? 2 : 1, recordSize = labelBytes + CifarImageSource.PixelBytes;
        using var all = new MemoryStream();
        foreach (var f in files)
        {
            var bytes = DatasetFiles.ReadMaybeGzipped(f);
            if (bytes.Length == 0 || bytes.Length % recordSize != 0)
                throw new DataException($"CIFAR file '{f}' has {bytes.Length} bytes, not a whole number of {recordSize}-byte records.");
            int limit = cifar100 ? 100 : 10;
            for (int r = 0; r < bytes.Length / recordSize; r++)
            {
                int fine = bytes[r * recordSize + labelBytes - 1];
                if (fine >= limit || (cifar100 && bytes[r * recordSize] >= 20))
                    throw new DataException($"CIFAR file '{f}' record {r} has label {fine}{(cifar100 ? $" (coarse {bytes[r * recordSize]})" : "")}, out of range; is it a {(cifar100 ? "CIFAR-100" : "CIFAR-10")} file?");
            }
            all.Write(bytes);
        }
        var source = new CifarImageSource(all.ToArray(), labelBytes, DatasetFiles.Identity(files));
        var classes = ReadNames(Path.Combine(dir, cifar100 ? "fine_label_names.txt" : "batches.meta.txt"), cifar100 ? 100 : 10)
                      ?? (cifar100 ? Cifar100Classes : Cifar10Classes);
        string split = train ? "train" : "test";
        return new Dataset(Items(source, $"{(cifar100 ? "cifar100" : "cifar10")}:{dir}:{split}", split, i => source.Label(i, labelBytes - 1)), classes);
    }

    private static string[]? ReadNames(string path, int count)
    {
        if (!File.Exists(path)) return null;
        var names = File.ReadAllLines(path).Select(l => l.Trim()).Where(l => l.Length > 0).ToArray();
        return names.Length == count ? names : null;
    }

    private static ImageItem[] Items(IImageSource source, string name, string split, Func<int, int> label)
    {
        var items = new ImageItem[source.Count];
        int width = Math.Max(5, (source.Count - 1).ToString().Length);
        for (int i = 0; i < items.Length; i++)
            items[i] = new ImageItem($"{name}#{i}", $"{split}/{i.ToString().PadLeft(width, '0')}", label(i)) { Source = source, SourceIndex = i };
        return items;
    }
}
