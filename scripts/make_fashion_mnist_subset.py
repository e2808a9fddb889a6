#!/usr/bin/env python3
"""Writes data/fashion-mnist-subset/: a stratified subset of Fashion-MNIST (600 train + 100 test images per class,
i.e. 6,000 / 1,000) in the original IDX gz format, from the full set in /usr/share/datasets/fashion-mnist.

Per class, the indices of that class are shuffled with a fixed seed (numpy-free: Python's random.Random(seed)) and the
first k kept; the kept indices are written in their original order. Re-running gives byte-identical files (gzip mtime 0).
Usage: python3 scripts/make_fashion_mnist_subset.py [SOURCE_DIR] [OUT_DIR]
"""
import gzip, os, random, struct, sys

SRC = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "..", "data", "fashion-mnist-subset")
PER_CLASS = {"train": 600, "t10k": 100}
SEED = 0


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return data[:4 + 4 * ndim], dims, data[4 + 4 * ndim:]


def write_idx(path, magic_and_dims, dims, payload, count):
    header = magic_and_dims[:4] + struct.pack(">" + "I" * len(dims), count, *dims[1:])
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write(header + payload)


os.makedirs(OUT, exist_ok=True)
for split, k in PER_CLASS.items():
    ih, idims, ipix = read_idx(os.path.join(SRC, f"{split}-images-idx3-ubyte.gz"))
    lh, ldims, labels = read_idx(os.path.join(SRC, f"{split}-labels-idx1-ubyte.gz"))
    size = idims[1] * idims[2]
    keep = []
    for c in range(10):
        idx = [i for i, l in enumerate(labels) if l == c]
        random.Random(SEED * 100 + c).shuffle(idx)
        keep += idx[:k]
    keep.sort()
    write_idx(os.path.join(OUT, f"{split}-images-idx3-ubyte.gz"), ih, idims, b"".join(ipix[i * size:(i + 1) * size] for i in keep), len(keep))
    write_idx(os.path.join(OUT, f"{split}-labels-idx1-ubyte.gz"), lh, ldims, bytes(labels[i] for i in keep), len(keep))
    print(f"{split}: {len(keep)} images")
