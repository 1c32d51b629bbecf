#!/usr/bin/env bash
# Gathers, on a machine that reaches the package index, the wheels that benchmarks/gpu_check.sh needs
# on the lent GPU machine, which has Python 3.12 with CUDA torch but none of our other dependencies and
# reaches no index. Writes them into .whl/ at the repo root (ignored by git; carry it to the machine).
#   bash benchmarks/gpu_wheels.sh && echo /.whl/ >> .git/info/exclude
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.whl
rm -rf "$dest" && mkdir -p "$dest"
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
# compiled or binary-only, for CPython 3.12 on x86-64
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
    -d "$dest" torchrl==0.14.1 tensordict==0.14.3 orjson
# numba is left out (llvmlite alone is ~40 MB of the 64 MiB carried): Crafter's resets there run
# opensimplex's plain-Python noise, ~1 s each, with the same worlds
# pure Python (some ship only a source archive: built here into a py3 wheel)
python -m pip wheel -q --no-deps -w "$dest" gymnasium==1.4.0 farama-notifications hydra-core==1.3.2 omegaconf==2.3.0 \
    antlr4-python3-runtime==4.9.3 crafter==1.8.3 opensimplex ruamel.yaml \
    pyvers hoptorch "importlib-metadata<9"
ls -la "$dest"
du -sh "$dest"
