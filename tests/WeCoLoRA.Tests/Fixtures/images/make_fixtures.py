#!/usr/bin/python3
"""Deterministically (re)generate the image fixtures and PIL/torchvision golden outputs for the Data tests.

Run with the system python (Pillow 9.4, torchvision 0.14):  /usr/bin/python3 make_fixtures.py
Outputs, next to this script:
  src/*          small images in every supported format (+ deliberately broken files)
  golden/*.rgb   raw HWC uint8 of PIL's Image.open(f).convert("RGB"), or of PIL resize results
  golden/*.f32   raw little-endian float32 CHW of torchvision ToTensor+Normalize
  manifest.json  sizes of every golden array and the parameters that produced it
"""
import json, os, struct, zlib
import numpy as np
from PIL import Image, features
import torch
from torchvision import transforms as T

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "src")
GOLD = os.path.join(HERE, "golden")
os.makedirs(SRC, exist_ok=True)
os.makedirs(GOLD, exist_ok=True)
rs = np.random.RandomState(1234)
manifest = {"pillow": Image.__version__, "decode": {}, "resize": {}, "eval": {}}


def textured(h, w, seed):
    """Noise + gradients + hard edges: exercises rounding and clamping (ringing) in the resamplers."""
    r = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    a = np.stack([
        (xx * 255 // max(w - 1, 1)),
        (yy * 255 // max(h - 1, 1)),
        ((xx // 4 + yy // 3) % 2) * 255,
    ], -1).astype(np.int32)
    a = a + r.randint(-40, 41, size=a.shape)
    return np.clip(a, 0, 255).astype(np.uint8)


def save_raw(name, arr):
    arr = np.ascontiguousarray(arr)
    with open(os.path.join(GOLD, name), "wb") as f:
        f.write(arr.tobytes())


def png_chunk(typ, data):
    return struct.pack(">I", len(data)) + typ + data + struct.pack(">I", zlib.crc32(typ + data) & 0xFFFFFFFF)


def write_png_raw(path, w, h, bitdepth, colortype, rows):
    raw = b"".join(b"\x00" + r for r in rows)
    ihdr = struct.pack(">IIBBBBB", w, h, bitdepth, colortype, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b""))


rgb = textured(23, 37, 1)
Image.fromarray(rgb, "RGB").save(os.path.join(SRC, "rgb.png"))
alpha = rs.randint(0, 256, size=(23, 37, 1)).astype(np.uint8)
alpha[0, :5] = 0  # fully transparent pixels must keep their RGB (no premultiplication)
Image.fromarray(np.concatenate([rgb, alpha], -1), "RGBA").save(os.path.join(SRC, "rgba.png"))
Image.fromarray(rgb, "RGB").quantize(colors=40, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(os.path.join(SRC, "palette.png"))
gray = textured(23, 37, 2)[..., 0]
Image.fromarray(gray, "L").save(os.path.join(SRC, "gray.png"))
Image.fromarray(np.concatenate([gray[..., None], alpha], -1), "LA").save(os.path.join(SRC, "gray_alpha.png"))
# 16-bit grayscale: PIL opens it as mode "I" and convert("RGB") CLAMPS to 255 (it does not scale).
g16 = (rs.randint(0, 65536, size=(23, 37))).astype(np.uint16)
g16[:, :10] = rs.randint(0, 300, size=(23, 10))  # some values in 0..299 so the clamp boundary is exercised
write_png_raw(os.path.join(SRC, "gray16.png"), 37, 23, 16, 0, [r.astype(">u2").tobytes() for r in g16])
# 16-bit RGB: PIL keeps the high byte of every sample.
c16 = rs.randint(0, 65536, size=(23, 37, 3)).astype(np.uint16)
write_png_raw(os.path.join(SRC, "rgb16.png"), 37, 23, 16, 2, [r.astype(">u2").tobytes() for r in c16])
Image.fromarray(rgb, "RGB").save(os.path.join(SRC, "rgb.jpg"), quality=92)
Image.fromarray(gray, "L").save(os.path.join(SRC, "gray.jpg"), quality=92)
Image.fromarray(rgb, "RGB").convert("CMYK").save(os.path.join(SRC, "cmyk.jpg"), quality=92)
Image.fromarray(rgb, "RGB").save(os.path.join(SRC, "rgb.bmp"))
f0 = Image.fromarray(rgb, "RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
f1 = Image.fromarray(255 - rgb, "RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
f0.save(os.path.join(SRC, "anim.gif"), save_all=True, append_images=[f1], duration=100, loop=0)
assert features.check("webp"), "Pillow lacks WebP"
Image.fromarray(rgb, "RGB").save(os.path.join(SRC, "lossless.webp"), lossless=True)
Image.fromarray(np.concatenate([rgb, np.maximum(alpha, 1)], -1), "RGBA").save(os.path.join(SRC, "lossless_rgba.webp"), lossless=True, exact=True)
big = textured(48, 64, 3)
Image.fromarray(big, "RGB").save(os.path.join(SRC, "big.png"))
# The same PNG bytes under a .jpg name: decoders must sniff content, as PIL does.
with open(os.path.join(SRC, "rgb.png"), "rb") as f:
    png_bytes = f.read()
with open(os.path.join(SRC, "png_named.jpg"), "wb") as f:
    f.write(png_bytes)

BROKEN = {"zero.png", "truncated.png", "text.jpg", "huge_header.png"}
for name in sorted(set(os.listdir(SRC)) - BROKEN):
    im = Image.open(os.path.join(SRC, name))
    im.seek(0)
    out = np.asarray(im.convert("RGB"))
    save_raw(name + ".rgb", out)
    manifest["decode"][name] = {"mode": im.mode, "w": out.shape[1], "h": out.shape[0]}

# Broken files (written after the goldens so they have none).
open(os.path.join(SRC, "zero.png"), "wb").close()
with open(os.path.join(SRC, "truncated.png"), "wb") as f:
    f.write(png_bytes[: len(png_bytes) // 2])
with open(os.path.join(SRC, "text.jpg"), "w") as f:
    f.write("this is not a JPEG, just text\n")
with open(os.path.join(SRC, "huge_header.png"), "wb") as f:  # 100000 x 100000 RGB claimed, tiny IDAT
    f.write(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b""))

# PIL resize goldens: down- and up-scaling of a 37x23 textured image with each filter.
filters = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}
for src_name, arr in [("rgb.png", rgb), ("big.png", big)]:
    for fname, flt in filters.items():
        for (w, h) in [(16, 11), (50, 40), (37, 11), (5, 23), (1, 1), (101, 7)]:
            out = np.asarray(Image.fromarray(arr, "RGB").resize((w, h), flt))
            key = f"{src_name}_{fname}_{w}x{h}"
            save_raw(key + ".rgb", out)
            manifest["resize"][key] = {"src": src_name, "filter": fname, "w": w, "h": h}

# timm-style eval (Resize(floor(size/crop_pct)) + CenterCrop(size) + ToTensor + Normalize) through torchvision.
mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
interp = {"bicubic": T.InterpolationMode.BICUBIC, "bilinear": T.InterpolationMode.BILINEAR}
for src_name, arr in [("rgb.png", rgb), ("big.png", big)]:
    for img_size, crop_pct, fname in [(16, 0.875, "bicubic"), (32, 0.875, "bicubic"), (20, 0.9, "bilinear"), (40, 1.0, "bicubic"), (23, 1.0, "bicubic")]:
        scale = int(np.floor(img_size / crop_pct))
        pil = Image.fromarray(arr, "RGB")
        resized = T.Resize(scale, interpolation=interp[fname])(pil)
        cropped = T.CenterCrop(img_size)(resized)
        tensor = T.Normalize(mean, std)(T.ToTensor()(cropped))
        key = f"{src_name}_eval_{img_size}_{crop_pct}_{fname}"
        save_raw(key + ".rgb", np.asarray(cropped))
        save_raw(key + ".f32", tensor.numpy().astype("<f4"))
        manifest["eval"][key] = {"src": src_name, "img_size": img_size, "crop_pct": crop_pct, "filter": fname,
                                 "mean": mean, "std": std}

# torchvision CenterCrop offsets (including the padding case) for a table of sizes.
cc = []
for (h, w, s) in [(23, 37, 16), (24, 37, 16), (25, 36, 17), (10, 10, 10), (11, 30, 8), (9, 12, 16), (30, 7, 12), (5, 6, 1)]:
    a = np.arange(h * w, dtype=np.int32).reshape(h, w) % 250 + 1
    out = np.asarray(T.CenterCrop(s)(Image.fromarray(a.astype(np.uint8), "L")))
    # recover offset of the first non-padding pixel
    cc.append({"h": h, "w": w, "size": s, "out": out.astype(int).flatten().tolist()})
manifest["center_crop"] = cc

with open(os.path.join(HERE, "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=1, sort_keys=True)
print("ok", len(manifest["decode"]), "decode,", len(manifest["resize"]), "resize,", len(manifest["eval"]), "eval goldens")
