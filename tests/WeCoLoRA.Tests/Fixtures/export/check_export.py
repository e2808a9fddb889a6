"""Loads a folder written by `wecolora export` into timm's ViT architecture in PyTorch, strictly, and writes its
features for a folder of images. This is the PyTorch side of the export parity test:

    /usr/bin/python3 check_export.py EXPORT_DIR IMAGES_DIR OUT.safetensors

Strict loading proves the names and shapes are timm's; the features (class token after norm, last-block tokens,
logits) are what the C# test compares with its own.
"""
import json, os, sys

import torch
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models"))
from make_models import RefViT, load_safetensors, preprocess, save_safetensors  # noqa: E402


def main(export_dir, images_dir, out_path):
    cfg = json.load(open(os.path.join(export_dir, "config.json")))
    args, pre = cfg["model_args"], cfg["pretrained_cfg"]
    model = RefViT(global_pool=args["global_pool"], num_classes=args["num_classes"], img_size=args["img_size"],
                   patch_size=args["patch_size"], embed_dim=args["embed_dim"], depth=args["depth"],
                   num_heads=args["num_heads"], mlp_ratio=args["mlp_ratio"]).eval()
    model.load_state_dict(load_safetensors(os.path.join(export_dir, "model.safetensors")), strict=True)
    paths = sorted(os.path.relpath(os.path.join(d, f), images_dir).replace(os.sep, "/")
                   for d, _, files in os.walk(images_dir) for f in files if f.lower().endswith(".png"))
    x = preprocess(paths, images_dir, pre["mean"], pre["std"], pre["crop_pct"], pre["interpolation"], img=args["img_size"])
    with torch.no_grad():
        feats = model.features(x)
    save_safetensors(out_path, {"cls": feats["cls"].contiguous(), "tokens": feats["tokens"].contiguous(),
                                "logits": feats["logits"].contiguous()}, {"paths": json.dumps(paths)})


if __name__ == "__main__":
    main(*sys.argv[1:4])
