#!/usr/bin/env bash
# Regenerates student/ (a WeCoLoRA student exported with adapters merged) and golden.safetensors (its features
# computed by PyTorch after a strict timm-name load). Run from the repository root.
set -euo pipefail
here=tests/WeCoLoRA.Tests/Fixtures/export
run=$(mktemp -d)/run
./wecolora distill --teacher tests/WeCoLoRA.Tests/Fixtures/models/timm_hub --data tests/WeCoLoRA.Tests/Fixtures/models/images \
  --out "$run" --epochs 3 --batch-size 2 --rank 4 --no-augment --lr 0.02 --warmup-epochs 1
rm -rf "$here/student"
./wecolora export --model "$run" --out "$here/student"
/usr/bin/python3 "$here/check_export.py" "$here/student" tests/WeCoLoRA.Tests/Fixtures/models/images "$here/golden.safetensors"
