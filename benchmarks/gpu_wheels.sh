#!/usr/bin/env bash
# Gathers, on a machine that reaches the package index, the wheels that benchmarks/gpu_check.sh needs
# on the lent GPU machine, which has Python 3.12 with CUDA torch but none of our other dependencies and
# reaches no index. Writes them into .whl/ at the repo root (ignored by git; carry it to the machine).
#   bash benchmarks/gpu_wheels.sh && printf '/.whl/\n/.reference/\n' >> .git/info/exclude
# and carry .whl and .reference (benchmarks/gpu_check.sh says how to call it)
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.whl
rm -rf "$dest" && mkdir -p "$dest"
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
# compiled or binary-only, for CPython 3.12 on x86-64
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
    -d "$dest" torchrl==0.14.1 tensordict==0.14.3 orjson ale-py==0.12.1
# numba is left out (llvmlite alone is ~40 MB of the 64 MiB carried): Crafter's resets there run
# opensimplex's plain-Python noise, ~1 s each, with the same worlds
# pure Python (some ship only a source archive: built here into a py3 wheel)
python -m pip wheel -q --no-deps -w "$dest" gymnasium==1.4.0 farama-notifications hydra-core==1.3.2 omegaconf==2.3.0 \
    antlr4-python3-runtime==4.9.3 crafter==1.8.3 opensimplex ruamel.yaml \
    pyvers hoptorch "importlib-metadata<9"
ls -la "$dest"
du -sh "$dest"
# the reference's own src/ and configs, for benchmarks/interleaved.py --device cuda (its imports are in the
# GPU image: einops, numpy, pillow, hydra from the wheels above); from a checkout of vmicheli/delta-iris
# at $REFERENCE (default /tmp/delta-iris), into .reference/ (ignored by git; carry it too)
reference=${REFERENCE:-/tmp/delta-iris}
if [ -d "$reference/src/models" ]; then
    rm -rf .reference && mkdir -p .reference && cp -r "$reference/src" "$reference/config" .reference/
    du -sh .reference
else
    echo "no reference checkout at $reference: benchmarks/gpu_check.sh will skip its interleaved rows"
fi
