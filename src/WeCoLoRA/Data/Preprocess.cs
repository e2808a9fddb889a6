namespace WeCoLoRA.Data;

/// <summary>timm-style image preprocessing for a model (from its pretrained config: input size, crop_pct, mean, std, interpolation).</summary>
public sealed record Preprocess(int ImgSize, double CropPct, float[] Mean, float[] Std, Interpolation Interpolation)
{
    public static readonly float[] ImageNetMean = [0.485f, 0.456f, 0.406f];
    public static readonly float[] ImageNetStd = [0.229f, 0.224f, 0.225f];

    /// <summary>ImageNet mean/std with bicubic resampling; take img size and crop_pct from the model's pretrained config.</summary>
    public static Preprocess ImageNet(int imgSize = 224, double cropPct = 0.9) =>
        new(imgSize, cropPct, ImageNetMean, ImageNetStd, Interpolation.Bicubic);

    /// <summary>Resize side used by eval: floor(ImgSize / CropPct), as timm's transforms_imagenet_eval.</summary>
    public int ScaleSize => (int)Math.Floor(ImgSize / CropPct);

    /// <summary>Number of floats in one normalized CHW sample.</summary>
    public int SampleLength => 3 * ImgSize * ImgSize;

    /// <summary>timm eval: Resize(floor(ImgSize / CropPct)) on the shorter side, then CenterCrop(ImgSize).</summary>
    public RgbImage Eval(RgbImage img) =>
        Transforms.CenterCrop(Transforms.ResizeShorter(img, ScaleSize, Interpolation), ImgSize);

    /// <summary>Training: RandomResizedCrop(ImgSize, scale (default 0.2–1.0), ratio 3/4–4/3, bicubic) then horizontal flip with p = 0.5.</summary>
    public RgbImage Train(RgbImage img, Random rng, (double Min, double Max)? scale = null)
    {
        var (top, left, h, w) = Transforms.RandomResizedCropParams(img.Height, img.Width, scale ?? (0.2, 1.0), (3.0 / 4.0, 4.0 / 3.0), rng);
        var cropped = Transforms.Resize(Transforms.Crop(img, top, left, h, w), ImgSize, ImgSize, Interpolation.Bicubic);
        return rng.NextDouble() < 0.5 ? Transforms.HorizontalFlip(cropped) : cropped;
    }

    /// <summary>
    /// Training for small images (CIFAR/MNIST style): resize to ImgSize if needed, pad by <paramref name="padding"/> black
    /// pixels on every side, take a random ImgSize crop, then flip horizontally with p = 0.5 (torchvision
    /// RandomCrop(size, padding) + RandomHorizontalFlip).
    /// </summary>
    public RgbImage PadCropFlip(RgbImage img, int padding, Random rng)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(padding);
        if (img.Width != ImgSize || img.Height != ImgSize) img = Transforms.Resize(img, ImgSize, ImgSize, Interpolation);
        int top = rng.Next(2 * padding + 1) - padding, left = rng.Next(2 * padding + 1) - padding;
        var cropped = Transforms.Crop(img, top, left, ImgSize, ImgSize);
        return rng.NextDouble() < 0.5 ? Transforms.HorizontalFlip(cropped) : cropped;
    }

    /// <summary>Normalizes an <see cref="Eval"/>/<see cref="Train"/> output into CHW floats.</summary>
    public void Normalize(RgbImage img, Span<float> destination) => Transforms.ToNormalizedChw(img, Mean, Std, destination);
}
