namespace WeCoLoRA;
public static class Smoke { public static string Hello() => TorchSharp.torch.ones(2).sum().item<float>().ToString(); }
