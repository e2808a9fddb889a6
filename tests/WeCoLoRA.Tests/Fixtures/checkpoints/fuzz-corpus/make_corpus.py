#!/usr/bin/python3
"""Writes the seed corpus for CheckpointFuzzTests next to this script: a few tiny, valid checkpoints
(one safetensors and a few torch.save zips) that the fuzzer mutates. Deterministic.

    /usr/bin/python3 tests/WeCoLoRA.Tests/Fixtures/checkpoints/fuzz-corpus/make_corpus.py

Needs only torch (1.13 here). safetensors is written by hand (u64 LE header length, JSON header
padded with spaces to a multiple of 8, tensor bytes packed in header order).
"""
import collections
import json
import os
import struct

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ST = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64", torch.uint8: "U8"}


def write_safetensors(fname, sd, metadata=None):
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for k, v in sd.items():
        b = v.contiguous().view(torch.uint8).numpy().tobytes() if v.numel() else b""
        header[k] = {"dtype": ST[v.dtype], "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(os.path.join(HERE, fname), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    torch.manual_seed(0)
    write_safetensors("seed.safetensors", collections.OrderedDict([
        ("a", torch.arange(6, dtype=torch.float32).reshape(2, 3)),
        ("b", torch.tensor([1, -2], dtype=torch.int64)),
        ("c", torch.tensor([0.5, 1.5], dtype=torch.bfloat16)),
        ("e", torch.zeros(0, 3, dtype=torch.float16)),
        ("u", torch.tensor([7], dtype=torch.uint8)),
    ]), {"format": "pt"})
    # A plain dict of small tensors.
    torch.save({"w": torch.arange(4, dtype=torch.float32).reshape(2, 2), "b": torch.tensor([3], dtype=torch.int64)},
               os.path.join(HERE, "seed_plain.pth"))
    # Views of one storage (offset, transpose) and a module state dict (OrderedDict with _metadata).
    base = torch.arange(6, dtype=torch.float16)
    lin = torch.nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2.0]]))
        lin.bias.fill_(0.5)
    sd = lin.state_dict()
    sd["row"] = base[2:4]
    sd["t"] = base.view(2, 3).t()
    torch.save(sd, os.path.join(HERE, "seed_views.pth"))
    # The MAE / DeiT release layout: the state dict under "model" next to other values.
    torch.save({"model": {"x": torch.ones(2, dtype=torch.bfloat16)}, "epoch": 3}, os.path.join(HERE, "seed_wrapped.pth"))
    # Not a seed (the fuzzer only reads seed*): a regression input. Two keys each expand one stored float to 2^26
    # elements (stride 0); each alone is within the expansion allowance, together they would copy 512 MiB out of 4 bytes.
    one = torch.zeros(1)
    torch.save({"a": one.expand(2 ** 26), "b": one.expand(2 ** 26)}, os.path.join(HERE, "expanded_twice.pth"))


if __name__ == "__main__":
    main()
