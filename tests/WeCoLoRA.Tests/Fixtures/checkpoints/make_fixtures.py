#!/usr/bin/python3
"""Writes the checkpoint-reader fixtures next to this script. Deterministic: run it again and the
tensors (and golden.json) come out the same.

    /usr/bin/python3 tests/WeCoLoRA.Tests/Fixtures/checkpoints/make_fixtures.py

Needs only torch (1.13 here) and numpy; safetensors is written by hand, following the spec:
u64 LE header length, JSON header (tensors + optional "__metadata__"), header padded with spaces
to a multiple of 8, then the tensor bytes in header order.
"""
import argparse
import collections
import json
import os
import shutil
import struct

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
golden = {}


def record(fname, sd):
    golden[fname] = {
        k: {
            "dtype": str(v.dtype).replace("torch.", ""),
            "shape": list(v.shape),
            "values": v.detach().reshape(-1).double().tolist() if v.dtype != torch.bool
            else [float(x) for x in v.reshape(-1).tolist()],
        }
        for k, v in sd.items()
    }


ST_DTYPES = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}


def raw_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: reinterpret the bits
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def write_safetensors(fname, sd, metadata=None):
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    blobs, offset = [], 0
    for k in sorted(sd):
        b = raw_bytes(sd[k])
        header[k] = {"dtype": ST_DTYPES[sd[k].dtype], "shape": list(sd[k].shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(os.path.join(HERE, fname), "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    record(fname, sd)


def save(fname, obj, sd):
    torch.save(obj, os.path.join(HERE, fname))
    record(fname, sd)


class Evil:
    """Pickles as a call to os.system: loading it with pickle would run the command."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def main():
    torch.manual_seed(0)

    # safetensors: every supported dtype, with metadata.
    st = {
        "f32": torch.randn(2, 3),
        "f16": torch.randn(4).half(),
        "bf16": torch.randn(3).bfloat16(),
        "f64": torch.randn(2, dtype=torch.float64),
        "i64": torch.tensor([-(2 ** 40), 7], dtype=torch.int64),
        "i32": torch.tensor([[-5, 6]], dtype=torch.int32),
        "i16": torch.tensor([-300, 300], dtype=torch.int16),
        "i8": torch.tensor([-128, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 255, 3], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
    }
    write_safetensors("tensors.safetensors", st, {"format": "pt", "note": "fixture"})

    # A module state dict (an OrderedDict carrying _metadata), saved as .pth and as .bin.
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2))
    sd = model.state_dict()
    sd["half"] = torch.randn(2, 2).half()
    sd["bf16"] = torch.randn(3).bfloat16()
    sd["steps"] = torch.tensor(5, dtype=torch.int64)
    sd["param"] = torch.nn.Parameter(torch.randn(2))  # pickled via _rebuild_parameter
    save("state_dict.pth", sd, sd)
    shutil.copyfile(os.path.join(HERE, "state_dict.pth"), os.path.join(HERE, "state_dict.bin"))
    record("state_dict.bin", sd)

    # MAE / DeiT release format: the state dict under "model", next to things that are not tensors.
    mae_sd = collections.OrderedDict(
        [("cls_token", torch.randn(1, 1, 4)), ("pos_embed", torch.randn(1, 2, 4)), ("norm.weight", torch.ones(4))])
    mae = {
        "model": mae_sd,
        "optimizer": {"state": {0: {"exp_avg": torch.randn(4)}}, "param_groups": [{"lr": 0.1, "params": [0]}]},
        "epoch": 3,
        "scaler": np.float64(1.5),  # numpy globals: must not be needed, and are not executed
        "args": argparse.Namespace(lr=0.1, model="vit_tiny"),
    }
    save("mae.pth", mae, mae_sd)

    # {"state_dict": ...} wrapper.
    wrapped_sd = {"w": torch.randn(3, 2), "b": torch.zeros(3)}
    save("wrapped.pth", {"state_dict": wrapped_sd, "hyper_parameters": {"lr": 0.01}}, wrapped_sd)

    # Views sharing one storage: a transpose (non-contiguous), a slice with an offset, and the base.
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    # "expanded" has stride 0: its storage holds 3 elements for a 4x3 tensor.
    views = {"base": base, "transposed": base.t(), "slice": base[1:, 1:3],
             "expanded": torch.tensor([[1.0, 2.0, 3.0]]).expand(4, 3)}
    save("views.pth", views, views)

    # Malicious: a state dict value built by os.system (pickle writes posix.system on Linux).
    torch.save({"w": Evil(), "ok": torch.ones(1)}, os.path.join(HERE, "malicious.pth"))
    # ... and the same as the top-level object.
    torch.save(Evil(), os.path.join(HERE, "malicious_top.pth"))

    with open(os.path.join(HERE, "golden.json"), "w") as f:
        json.dump(golden, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
