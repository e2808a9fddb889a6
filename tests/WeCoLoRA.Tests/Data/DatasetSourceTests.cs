using WeCoLoRA.Data;

namespace WeCoLoRA.Tests.Data;

public sealed class DatasetSourceTests
{
    // 3 images of 2x2: image i has pixels 10i, 10i+1, 10i+2, 10i+3.
    static readonly byte[] Pixels = [0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23];

    static string MakeIdx(TempDir d, string folder, bool gzip)
    {
        var dir = Path.Combine(d.Path, folder);
        Directory.CreateDirectory(dir);
        string gz = gzip ? ".gz" : "";
        IdxFile.Write(Path.Combine(dir, "train-images-idx3-ubyte" + gz), [3, 2, 2], Pixels, gzip);
        IdxFile.Write(Path.Combine(dir, "train-labels-idx1-ubyte" + gz), [3], [2, 0, 9], gzip);
        IdxFile.Write(Path.Combine(dir, "t10k-images-idx3-ubyte" + gz), [1, 2, 2], Pixels.AsSpan(0, 4), gzip);
        IdxFile.Write(Path.Combine(dir, "t10k-labels-idx1-ubyte" + gz), [1], [7], gzip);
        return dir;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Idx_files_plain_or_gzipped_become_rgb_samples(bool gzip)
    {
        using var d = new TempDir();
        var dir = MakeIdx(d, "fashion-mini", gzip);
        var train = DatasetSource.Open($"idx:{dir}:train");
        Assert.Equal(DatasetSource.FashionMnistClasses, train.Classes);
        Assert.Equal([2, 0, 9], train.Items.Select(i => i.Label));
        Assert.Equal(["train/00000", "train/00001", "train/00002"], train.Items.Select(i => i.RelativePath));
        var img = train.Items[1].Load();
        Assert.Equal((2, 2), (img.Width, img.Height));
        Assert.Equal(new byte[] { 10, 10, 10, 11, 11, 11, 12, 12, 12, 13, 13, 13 }, img.Pixels);

        var test = DatasetSource.Open($"idx:{dir}:test");
        Assert.Equal([7], test.Items.Select(i => i.Label));
        Assert.Equal(test.Items[0].Path, $"idx:{dir}:test#0");
    }

    [Fact]
    public void In_memory_items_flow_through_the_batch_loader()
    {
        using var d = new TempDir();
        var dir = MakeIdx(d, "digits", gzip: false);
        var set = DatasetSource.Open($"idx:{dir}:train");
        Assert.Equal([.. Enumerable.Range(0, 10).Select(i => i.ToString())], set.Classes);
        var pre = new Preprocess(2, 1.0, [0f, 0f, 0f], [1f, 1f, 1f], Interpolation.Bilinear);
        using var loader = BatchLoader.ForPreprocess(set.Items, 2, pre, workers: 1);
        var batches = loader.GetBatches().ToList();
        Assert.Equal(2, batches.Count);
        Assert.Equal([2L, 3, 2, 2], batches[0].Images.shape);
        Assert.Equal(22f / 255, batches[1].Images[0, 1, 1, 0].item<float>(), 1e-6f);
        foreach (var b in batches) b.Dispose();
    }

    [Fact]
    public void Bad_idx_inputs_get_one_line_errors_naming_the_file()
    {
        using var d = new TempDir();
        var dir = MakeIdx(d, "m", gzip: false);
        File.Delete(Path.Combine(dir, "t10k-labels-idx1-ubyte"));
        var e = Assert.Throws<DataException>(() => DatasetSource.Open($"idx:{dir}:test"));
        Assert.Contains(Path.Combine(dir, "t10k-labels-idx1-ubyte"), e.Message);
        Assert.DoesNotContain('\n', e.Message);

        var bad = Path.Combine(dir, "train-images-idx3-ubyte");
        File.WriteAllBytes(bad, [0x12, 0x34, 0x08, 0x03, 0, 0, 0, 0]);
        e = Assert.Throws<DataException>(() => DatasetSource.Open($"idx:{dir}:train"));
        Assert.Contains(bad, e.Message);
        Assert.Contains("magic", e.Message);
        Assert.DoesNotContain('\n', e.Message);

        IdxFile.Write(bad, [3, 2, 2], Pixels.AsSpan(0, 11)); // one byte short of its header's 3x2x2
        e = Assert.Throws<DataException>(() => DatasetSource.Open($"idx:{dir}:train"));
        Assert.Contains(bad, e.Message);

        IdxFile.Write(bad, [2, 2, 2], Pixels.AsSpan(0, 8)); // 2 images, 3 labels
        e = Assert.Throws<DataException>(() => DatasetSource.Open($"idx:{dir}:train"));
        Assert.Contains("3 labels", e.Message);

        e = Assert.Throws<DataException>(() => DatasetSource.Open($"idx:{dir}"));
        Assert.Contains("split", e.Message);
        e = Assert.Throws<DataException>(() => DatasetSource.Open("idx:/no/such/dir:train"));
        Assert.Contains("/no/such/dir", e.Message);
    }

    static byte[] CifarRecord(byte[] labels, byte r, byte g, byte b)
    {
        var rec = new byte[labels.Length + 3072];
        labels.CopyTo(rec, 0);
        rec.AsSpan(labels.Length, 1024).Fill(r);
        rec.AsSpan(labels.Length + 1024, 1024).Fill(g);
        rec.AsSpan(labels.Length + 2048, 1024).Fill(b);
        rec[labels.Length + 1] = 99; // R of pixel (0, 1)
        return rec;
    }

    [Fact]
    public void Cifar10_records_are_label_then_rgb_planes()
    {
        using var d = new TempDir();
        d.File("cifar-10-batches-bin/data_batch_1.bin", [.. CifarRecord([3], 1, 2, 3), .. CifarRecord([9], 4, 5, 6)]);
        d.File("cifar-10-batches-bin/data_batch_2.bin", CifarRecord([0], 7, 8, 9));
        d.File("cifar-10-batches-bin/test_batch.bin", CifarRecord([5], 0, 0, 0));
        var train = DatasetSource.Open($"cifar10:{d.Path}:train");
        Assert.Equal(DatasetSource.Cifar10Classes, train.Classes);
        Assert.Equal([3, 9, 0], train.Items.Select(i => i.Label));
        var img = train.Items[1].Load();
        Assert.Equal((32, 32), (img.Width, img.Height));
        Assert.Equal(new byte[] { 4, 5, 6, 99, 5, 6, 4, 5, 6 }, img.Pixels[..9]);
        Assert.Equal([5], DatasetSource.Open($"cifar10:{d.Path}:test").Items.Select(i => i.Label));

        File.WriteAllBytes(Path.Combine(d.Path, "cifar-10-batches-bin", "test_batch.bin"), new byte[3000]);
        var e = Assert.Throws<DataException>(() => DatasetSource.Open($"cifar10:{d.Path}:test"));
        Assert.Contains("test_batch.bin", e.Message);
    }

    [Fact]
    public void Cifar100_uses_the_fine_label()
    {
        using var d = new TempDir();
        d.File("train.bin", [.. CifarRecord([4, 77], 1, 2, 3), .. CifarRecord([19, 99], 1, 2, 3)]);
        var train = DatasetSource.Open($"cifar100:{d.Path}:train");
        Assert.Equal(100, train.Classes.Count);
        Assert.Equal("worm", train.Classes[99]);
        Assert.Equal([77, 99], train.Items.Select(i => i.Label));
        var e = Assert.Throws<DataException>(() => DatasetSource.Open($"cifar100:{d.Path}:test"));
        Assert.Contains(Path.Combine(d.Path, "test.bin"), e.Message);
    }

    [Fact]
    public void Folders_keep_imagefolder_semantics_subsets_are_even_and_test_labels_follow_train_classes()
    {
        using var d = new TempDir();
        foreach (var f in new[] { "train/a/1.png", "train/b/2.png", "train/c/3.png", "test/c/x.png", "test/a/y.png" })
            d.File(f);
        var train = DatasetSource.Open(Path.Combine(d.Path, "train"));
        Assert.Equal(["a", "b", "c"], train.Classes);
        var test = DatasetSource.Open(Path.Combine(d.Path, "test")).RelabelTo(train.Classes, "test");
        Assert.Equal([0, 2], test.Items.Select(i => i.Label));
        Assert.Equal(5, DatasetSource.OpenUnlabeled(d.Path).Count);
        Assert.Throws<DataException>(() => train.RelabelTo(["a", "c"], "train"));

        var ten = Enumerable.Range(0, 10).Select(i => new ImageItem($"{i}", $"{i}", i % 2)).ToList();
        Assert.Equal(["0", "3", "6"], DatasetSource.Subset(ten, 3).Select(i => i.Path));
    }

    [Fact]
    public void Multilabel_csv_lists_paths_relative_to_itself()
    {
        using var d = new TempDir();
        d.File("img/a.png");
        d.File("img/b.png");
        var csv = d.File("train.csv", "path,labels\nimg/a.png,Mass|Effusion\n\nimg/b.png,\n"u8.ToArray());
        var set = MultiLabelCsv.Read(csv);
        Assert.Equal(["Effusion", "Mass"], set.Classes);
        Assert.Equal([1, 0], set.Targets[0]);
        Assert.Empty(set.Targets[1]);
        Assert.Equal(Path.Combine(d.Path, "img", "b.png"), set.Items[1].Path);
        var bad = d.File("test.csv", "img/a.png,Nodule\n"u8.ToArray());
        var e = Assert.Throws<DataException>(() => MultiLabelCsv.Read(bad, set.Classes));
        Assert.Contains("Nodule", e.Message);
    }
}
