"""Golden attention probabilities and attention rollout for the tiny timm_hub ViT.

Run with Debian's PyTorch: /usr/bin/python3 make_rollout_golden.py (deterministic; rewrites rollout_golden.safetensors).
The weights are tests/WeCoLoRA.Tests/Fixtures/models/timm_hub/model.safetensors, loaded into make_models.RefViT; the input is
a fixed random batch stored beside the results so the C# test feeds the model the same pixels.

Rollout (Abnar & Zuidema 2020, with jacobgil/vit-explain's head fusion and discarding), per block:
  fuse heads (mean | max | min) -> A [B, N, N];
  per sample, zero the int(N*N*discard_ratio) smallest entries of the flattened A, except flat index 0 (class -> class);
  A <- (A + I) / 2, rows renormalized to sum 1; R <- A @ R (R starts at I).
Result: R[:, 0, 1:] (class token over patches) on the patch grid, divided by its maximum per sample.
Two deliberate departures from vit-explain's code: the discard is per sample (it only zeroes sample 0 of a batch), and
rows are renormalized with keepdim (its a / a.sum(dim=-1) broadcasts the row sums across columns).
"""
import os, sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "..", "models")
sys.path.insert(0, MODELS)
from make_models import RefViT, load_safetensors, save_safetensors  # noqa: E402


def attention_probs(model, x):
    """Each block's softmax(q k^T * scale) [B, heads, N, N], from the block's own qkv output."""
    probs = []
    t = model.patch_embed.proj(x).flatten(2).transpose(1, 2)
    t = torch.cat([model.cls_token.expand(t.shape[0], -1, -1), t], 1) + model.pos_embed
    for blk in model.blocks:
        h = blk.norm1(t)
        B, N, C = h.shape
        heads = blk.attn.heads
        q, k, _ = blk.attn.qkv(h).reshape(B, N, 3, heads, C // heads).permute(2, 0, 3, 1, 4).unbind(0)
        probs.append(((q @ k.transpose(-2, -1)) * (C // heads) ** -0.5).softmax(-1))
        t = blk(t)
    return probs


def rollout(probs, head_fusion, discard_ratio):
    """numpy float64 rollout of a list of [B, heads, N, N] arrays -> [B, grid, grid] in [0, 1]."""
    B, _, N, _ = probs[0].shape
    result = np.tile(np.eye(N), (B, 1, 1))
    for p in probs:
        p = p.astype(np.float64)
        fused = {"mean": p.mean(1), "max": p.max(1), "min": p.min(1)}[head_fusion]
        flat = fused.reshape(B, -1).copy()
        k = int(flat.shape[-1] * discard_ratio)
        for b in range(B):
            idx = np.argsort(flat[b], kind="stable")[:k]
            idx = idx[idx != 0]
            flat[b, idx] = 0.0
        a = (flat.reshape(B, N, N) + np.eye(N)) / 2.0
        a = a / a.sum(-1, keepdims=True)
        result = a @ result
    mask = result[:, 0, 1:]
    g = int(round((N - 1) ** 0.5))
    mask = mask / mask.max(-1, keepdims=True)
    return mask.reshape(B, g, g)


def main():
    torch.manual_seed(0)
    model = RefViT()
    model.load_state_dict(load_safetensors(os.path.join(MODELS, "timm_hub", "model.safetensors")), strict=True)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        probs = attention_probs(model, x)
    out = {"input": x}
    for i, p in enumerate(probs):
        out[f"attn.{i}"] = p.contiguous()
    np_probs = [p.numpy() for p in probs]
    for fusion in ("mean", "max", "min"):
        for ratio in (0.0, 0.9):
            out[f"rollout.{fusion}.{ratio}"] = torch.from_numpy(rollout(np_probs, fusion, ratio).astype(np.float32))
    save_safetensors(os.path.join(HERE, "rollout_golden.safetensors"), out)
    print("wrote", sorted(out))


if __name__ == "__main__":
    main()
