#!/usr/bin/env python3
"""Golden tensors for one WeCoLoRA distillation step (distill_step.safetensors), from the timm_hub fixture teacher.

The student keeps teacher blocks 0 and 2 (r = 2) and gets PEFT-style LoRA on q, k, v, proj, fc1 and fc2 (rank 4,
alpha 8, so scaling 2), with random A and B so that every adapter gets a gradient. The loss is the method's L1 between
the student's and the teacher's last-block tokens before the final norm. Stored: the images, the adapters (our state
dict names), the loss and the gradient of every adapter ("grad." + name). Run with Debian's PyTorch:
    /usr/bin/python3 make_distill_step.py
"""
import copy, os
import torch
import torch.nn as nn
from make_models import HERE, RefViT, load_safetensors, save_safetensors

RANK, ALPHA = 4, 8.0


class LoraLinear(nn.Module):
    """PEFT's LoRA layer: base(x) + scaling * B(A(x)), per part of a fused output (q, k, v for timm's qkv)."""

    def __init__(self, base, parts, g):
        super().__init__()
        self.base, self.parts, self.scaling = base, parts, ALPHA / RANK
        size = base.out_features // len(parts)
        self.A = nn.ParameterList([nn.Parameter(torch.randn(RANK, base.in_features, generator=g) * 0.2) for _ in parts])
        self.B = nn.ParameterList([nn.Parameter(torch.randn(size, RANK, generator=g) * 0.1) for _ in parts])

    def forward(self, x):
        y = self.base(x)
        deltas = [(x @ a.t()) @ b.t() * self.scaling for a, b in zip(self.A, self.B)]
        return y + torch.cat(deltas, -1)


def main():
    teacher = RefViT()
    teacher.load_state_dict(load_safetensors(os.path.join(HERE, "timm_hub", "model.safetensors")))
    teacher.eval()
    student = copy.deepcopy(teacher)
    student.blocks = nn.Sequential(student.blocks[0], student.blocks[2])
    for p in student.parameters():
        p.requires_grad = False
    g = torch.Generator().manual_seed(11)
    adapters = {}
    for i, b in enumerate(student.blocks):
        for host, name, parts in [(b.attn, "qkv", ["q", "k", "v"]), (b.attn, "proj", [""]), (b.mlp, "fc1", [""]), (b.mlp, "fc2", [""])]:
            layer = LoraLinear(getattr(host, name), parts, g)
            setattr(host, name, layer)
            prefix = f"blocks.{i}.{'attn' if host is b.attn else 'mlp'}.{name}"
            for j, p in enumerate(parts):
                key = f".{p}" if len(parts) > 1 else ""
                adapters[f"{prefix}.lora_A{key}.weight"] = layer.A[j]
                adapters[f"{prefix}.lora_B{key}.weight"] = layer.B[j]
    images = torch.randn(5, 3, 32, 32, generator=g)
    with torch.no_grad():
        target = teacher.tokens(images)
    loss = (student.tokens(images) - target).abs().mean()
    loss.backward()
    out = {"images": images, "loss": loss.detach().reshape(1)}
    for name, p in adapters.items():
        out[name] = p.detach()
        out["grad." + name] = p.grad
    save_safetensors(os.path.join(HERE, "distill_step.safetensors"), out, {"format": "pt"})
    print(f"loss {loss.item():.6f}, {len(adapters)} adapters")


if __name__ == "__main__":
    main()
