"""Generates the small ViT checkpoints (one per published format) and golden features that the model tests
compare against. Run with Debian's PyTorch: /usr/bin/python3 make_models.py (deterministic; rewrites this folder).

timm is not installable here, so `RefViT` below re-states timm's VisionTransformer (same parameter names and
math: pre-norm blocks, LayerNorm, exact GELU, fused qkv, fc_norm for global-average pooling). It is checked
against torchvision's VisionTransformer on the same weights before anything is written.
"""
import argparse, json, os, shutil, struct
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision import transforms
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
IMG, PATCH, DIM, DEPTH, HEADS, CLASSES = 32, 8, 48, 3, 3, 5
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q @ k.transpose(-2, -1)) * (C // self.heads) ** -0.5
        x = attn.softmax(-1) @ v
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, eps, mlp_ratio=4.0):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=eps), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=eps), Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class RefViT(nn.Module):
    """timm's VisionTransformer(img_size, patch_size, embed_dim, depth, num_heads, mlp_ratio, num_classes, global_pool)."""

    def __init__(self, global_pool="token", num_classes=CLASSES, eps=1e-6, img_size=IMG, patch_size=PATCH,
                 embed_dim=DIM, depth=DEPTH, num_heads=HEADS, mlp_ratio=4.0):
        super().__init__()
        self.global_pool = global_pool
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, embed_dim, patch_size, patch_size)
        self.cls_token = nn.Parameter(torch.randn(1, 1, embed_dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, (img_size // patch_size) ** 2 + 1, embed_dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, eps, mlp_ratio) for _ in range(depth)])
        avg = global_pool == "avg"
        self.norm = nn.Identity() if avg else nn.LayerNorm(embed_dim, eps=eps)
        self.fc_norm = nn.LayerNorm(embed_dim, eps=eps) if avg else nn.Identity()
        self.head = nn.Linear(embed_dim, num_classes) if num_classes else nn.Identity()
        with torch.no_grad():  # non-trivial norms so that a swapped weight/bias shows
            for m in self.modules():
                if isinstance(m, nn.LayerNorm):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)

    def tokens(self, x):
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        return self.blocks(x)

    def features(self, x):
        t = self.tokens(x)
        h = self.norm(t)
        return {
            "tokens": t,
            "cls": self.fc_norm(h[:, 0]),
            "avg": self.fc_norm(h[:, 1:].mean(1)),
            "logits": self.head(self.fc_norm(h[:, 0] if self.global_pool == "token" else h[:, 1:].mean(1))),
        }


def load_safetensors(path):
    """Reads a safetensors file (F32/F16/BF16) into a dict of tensors."""
    codes = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        blob = bytearray(raw[8 + n + b:8 + n + end])
        dtype = codes[e["dtype"]]
        t = torch.frombuffer(blob, dtype=torch.int16).view(dtype) if dtype == torch.bfloat16 else torch.frombuffer(blob, dtype=dtype)
        out[name] = t.reshape(e["shape"]).clone()
    return out


def save_safetensors(path, tensors, metadata=None):
    """The safetensors layout, written by hand (the package is not installed): u64 header length, JSON header, data."""
    codes = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        raw = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[name] = {"dtype": codes[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def timm_config(global_pool, num_classes, mean, std, crop_pct, interpolation):
    return {
        "architecture": "vit_base_patch16_224",
        "num_classes": num_classes, "num_features": DIM, "global_pool": global_pool,
        "model_args": {"img_size": IMG, "patch_size": PATCH, "embed_dim": DIM, "depth": DEPTH, "num_heads": HEADS,
                       "num_classes": num_classes, "global_pool": global_pool},
        "pretrained_cfg": {"input_size": [3, IMG, IMG], "interpolation": interpolation, "crop_pct": crop_pct,
                           "mean": mean, "std": std, "num_classes": num_classes, "classifier": "head"},
    }


def hf_state_dict(ref):
    sd = OrderedDict()
    p = "vit."
    sd[p + "embeddings.cls_token"] = ref.cls_token
    sd[p + "embeddings.position_embeddings"] = ref.pos_embed
    sd[p + "embeddings.patch_embeddings.projection.weight"] = ref.patch_embed.proj.weight
    sd[p + "embeddings.patch_embeddings.projection.bias"] = ref.patch_embed.proj.bias
    for i, b in enumerate(ref.blocks):
        L = f"{p}encoder.layer.{i}."
        for part, w, bias in zip(("query", "key", "value"), b.attn.qkv.weight.chunk(3), b.attn.qkv.bias.chunk(3)):
            sd[L + f"attention.attention.{part}.weight"], sd[L + f"attention.attention.{part}.bias"] = w, bias
        pairs = {"layernorm_before": b.norm1, "attention.output.dense": b.attn.proj, "layernorm_after": b.norm2,
                 "intermediate.dense": b.mlp.fc1, "output.dense": b.mlp.fc2}
        for name, m in pairs.items():
            sd[L + name + ".weight"], sd[L + name + ".bias"] = m.weight, m.bias
    sd[p + "layernorm.weight"], sd[p + "layernorm.bias"] = ref.norm.weight, ref.norm.bias
    sd["classifier.weight"], sd["classifier.bias"] = ref.head.weight, ref.head.bias
    return OrderedDict((k, v.detach().clone().contiguous()) for k, v in sd.items())


def torchvision_model():
    tv = torchvision.models.vision_transformer.VisionTransformer(
        image_size=IMG, patch_size=PATCH, num_layers=DEPTH, num_heads=HEADS, hidden_dim=DIM, mlp_dim=DIM * 4, num_classes=CLASSES)
    with torch.no_grad():
        for p in tv.parameters():
            p.normal_(0, 0.1)
    return tv.eval()


def tv_to_timm(sd):
    out = OrderedDict()
    out["cls_token"] = sd["class_token"]
    out["pos_embed"] = sd["encoder.pos_embedding"]
    out["patch_embed.proj.weight"], out["patch_embed.proj.bias"] = sd["conv_proj.weight"], sd["conv_proj.bias"]
    for i in range(DEPTH):
        L = f"encoder.layers.encoder_layer_{i}."
        for src, dst in [("ln_1", "norm1"), ("self_attention.out_proj", "attn.proj"), ("ln_2", "norm2"),
                         ("mlp.0", "mlp.fc1"), ("mlp.3", "mlp.fc2")]:
            for s in ("weight", "bias"):
                out[f"blocks.{i}.{dst}.{s}"] = sd[f"{L}{src}.{s}"]
        out[f"blocks.{i}.attn.qkv.weight"] = sd[L + "self_attention.in_proj_weight"]
        out[f"blocks.{i}.attn.qkv.bias"] = sd[L + "self_attention.in_proj_bias"]
    out["norm.weight"], out["norm.bias"] = sd["encoder.ln.weight"], sd["encoder.ln.bias"]
    out["head.weight"], out["head.bias"] = sd["heads.head.weight"], sd["heads.head.bias"]
    return out


def make_images():
    """Small real-looking images of several sizes and modes, in nested folders (paths sort ordinally)."""
    root = os.path.join(HERE, "images")
    shutil.rmtree(root, ignore_errors=True)
    g = torch.Generator().manual_seed(1)
    specs = [("B.png", 40, 36, "RGB"), ("a.png", 32, 32, "RGB"), ("sub/c.png", 64, 50, "RGB"), ("sub/d_gray.png", 45, 45, "L")]
    for rel, w, h, mode in specs:
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # smooth gradients plus noise: resampling differences would show
        yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
        base = torch.stack([xx, yy, (xx + yy) / 2]) * 200 + torch.rand(3, h, w, generator=g) * 55
        arr = base.clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        img = Image.fromarray(arr, "RGB")
        (img.convert("L") if mode == "L" else img).save(path)
    return root, sorted(rel for rel, *_ in specs)


def preprocess(paths, root, mean, std, crop_pct, interpolation, img=IMG):
    """timm's eval transform: resize the shorter side to floor(img / crop_pct), center crop, normalize."""
    mode = {"bicubic": transforms.InterpolationMode.BICUBIC, "bilinear": transforms.InterpolationMode.BILINEAR}[interpolation]
    t = transforms.Compose([transforms.Resize(int(img / crop_pct), interpolation=mode), transforms.CenterCrop(img),
                            transforms.ToTensor(), transforms.Normalize(mean, std)])
    return torch.stack([t(Image.open(os.path.join(root, p)).convert("RGB")) for p in paths])


def golden(ref, x, prefix):
    with torch.no_grad():
        return {f"{prefix}.{k}": v.contiguous() for k, v in ref.features(x).items()}


def main():
    argparse.ArgumentParser(description=__doc__).parse_args()
    torch.manual_seed(0)
    root, paths = make_images()
    gold = {}

    # timm: hub folder (model.safetensors + config.json), crop_pct 0.875 bicubic, mean/std 0.5
    ref = RefViT().eval()
    d = os.path.join(HERE, "timm_hub")
    os.makedirs(d, exist_ok=True)
    save_safetensors(os.path.join(d, "model.safetensors"), {k: v.detach() for k, v in ref.state_dict().items()}, {"format": "pt"})
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(timm_config("token", CLASSES, [0.5] * 3, [0.5] * 3, 0.875, "bicubic"), f, indent=2)
    gold.update(golden(ref, preprocess(paths, root, [0.5] * 3, [0.5] * 3, 0.875, "bicubic"), "timm"))
    # timm's resample_abs_pos_embed to a 48 px input (4x4 -> 6x6 grid): bicubic, antialias, class token kept
    with torch.no_grad():
        grid = ref.pos_embed[:, 1:].reshape(1, 4, 4, DIM).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(6, 6), mode="bicubic", antialias=True, align_corners=False)
        gold["timm.pos_embed_48"] = torch.cat([ref.pos_embed[:, :1], grid.permute(0, 2, 3, 1).reshape(1, 36, DIM)], 1).contiguous()

    # The same weights stored raw in bf16, no config (ImageNet mean/std, crop_pct 0.9, bicubic): --num-heads needed.
    bf = {k: v.detach().to(torch.bfloat16) for k, v in ref.state_dict().items()}
    save_safetensors(os.path.join(HERE, "timm_raw_bf16.safetensors"), bf)
    ref_bf = RefViT().eval()
    ref_bf.load_state_dict({k: v.float() for k, v in bf.items()})
    gold.update(golden(ref_bf, preprocess(paths, root, IMAGENET_MEAN, IMAGENET_STD, 0.9, "bicubic"), "timm_bf16"))

    # MAE fine-tune release format: {"model": state dict, "epoch", "args": Namespace}, global pool, plus
    # pretraining-only keys (mask_token, decoder_*) that a loader drops.
    mae = RefViT(global_pool="avg").eval()
    sd = OrderedDict((k, v.detach().clone()) for k, v in mae.state_dict().items())
    sd["mask_token"] = torch.zeros(1, 1, DIM)
    sd["decoder_embed.weight"] = torch.zeros(8, DIM)
    torch.save({"model": sd, "epoch": 99, "args": argparse.Namespace(lr=1e-3, model="vit_base_patch16")},
               os.path.join(HERE, "mae_finetuned.pth"))
    gold.update(golden(mae, preprocess(paths, root, IMAGENET_MEAN, IMAGENET_STD, 0.9, "bicubic"), "mae"))

    # Hugging Face ViTForImageClassification: pytorch_model.bin + config.json + preprocessor_config.json
    hf = RefViT(eps=1e-12).eval()
    d = os.path.join(HERE, "hf_vit")
    os.makedirs(d, exist_ok=True)
    torch.save(hf_state_dict(hf), os.path.join(d, "pytorch_model.bin"))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"architectures": ["ViTForImageClassification"], "model_type": "vit", "hidden_size": DIM,
                   "num_hidden_layers": DEPTH, "num_attention_heads": HEADS, "intermediate_size": DIM * 4,
                   "hidden_act": "gelu", "image_size": IMG, "patch_size": PATCH, "num_channels": 3,
                   "layer_norm_eps": 1e-12, "qkv_bias": True,
                   "id2label": {str(i): f"class_{i}" for i in range(CLASSES)},
                   "label2id": {f"class_{i}": i for i in range(CLASSES)}}, f, indent=2)
    with open(os.path.join(d, "preprocessor_config.json"), "w") as f:
        json.dump({"image_processor_type": "ViTImageProcessor", "do_resize": True, "size": {"height": IMG, "width": IMG},
                   "resample": 3, "do_normalize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}, f, indent=2)
    gold.update(golden(hf, preprocess(paths, root, [0.5] * 3, [0.5] * 3, 1.0, "bicubic"), "hf"))

    # torchvision vit_b_16-style state dict; golden from torchvision's own module, cross-checked against RefViT.
    tv = torchvision_model()
    torch.save(tv.state_dict(), os.path.join(HERE, "torchvision_vit.pth"))
    x = preprocess(paths, root, IMAGENET_MEAN, IMAGENET_STD, 0.875, "bilinear")
    with torch.no_grad():
        logits = tv(x)
        ref_tv = RefViT().eval()
        ref_tv.load_state_dict(tv_to_timm(tv.state_dict()))
        feats = ref_tv.features(x)
        assert (feats["logits"] - logits).abs().max() < 1e-5, "RefViT disagrees with torchvision's ViT"
    gold.update(golden(ref_tv, x, "torchvision"))
    gold["torchvision.logits"] = logits.contiguous()

    save_safetensors(os.path.join(HERE, "golden.safetensors"), gold, {"paths": json.dumps(paths)})
    print("wrote", len(gold), "golden tensors for", paths)


if __name__ == "__main__":
    main()
