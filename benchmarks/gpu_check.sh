#!/usr/bin/env bash
# The GPU check: one command on a CUDA machine, under 10 minutes in all (each step has a time limit; the
# limits add up to 600 s). Run it first thing whenever a GPU is lent (device tool), e.g.
#   bash benchmarks/gpu_wheels.sh      # here, once: .whl/ (our dependencies) and .reference/ (its src/)
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl", ".reference"], timeout_s=600)
# Steps:
#   1. the GPU-marked tests (pytest -m gpu),
#   2. 2 epochs of params=smoke on CUDA (collection with the policy on the GPU, the tokenizer's first
#      counted update in epoch 2, evaluation, checkpoint),
#   3. 2 epochs of env=atari params=smoke on CUDA,
#   4. the memory task (env=recall params=recall) on CUDA, with its greedy test score,
#   5. benchmarks/interleaved.py --device cuda: the reference's own modules (carried in .reference/)
#      against ours, tokenizer, world model, actor-critic and imagination at B = 16, 64, 256, 1024, in
#      fp32 and bf16; then the same with ours compiled in reduce-overhead mode (the imagination step as
#      CUDA graphs; imagination and the actor-critic; "skipping cudagraphs" in its log says why not),
#   6. benchmarks/runtime.py for both full presets (Crafter 10M and Atari 100k: their GPU hours),
# then a summary. Outputs go to $OUT (the device tool's folder) or ./gpu_check_out.
# On the lent GPU machine (Python 3.12 with CUDA torch, no package index) our other dependencies come
# from .whl/ (benchmarks/gpu_wheels.sh): this script installs them.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu_check_out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 WANDB_SILENT=true HYDRA_FULL_ERROR=1
if [ -d .whl ] && ! python3 -c "import torchrl" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "installing .whl failed"; exit 3; }
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('device:', torch.cuda.get_device_name())" \
    || exit 2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true

declare -A rc secs
step() {  # step NAME LIMIT_S COMMAND...
    local name=$1 limit=$2; shift 2
    local start=$SECONDS
    echo "=== $name: $*"
    timeout "$limit" "$@" > "$out/$name.log" 2>&1
    rc[$name]=$?
    secs[$name]=$((SECONDS - start))
    tail -n 5 "$out/$name.log"
}

reference=${REFERENCE_SRC:-.reference/src}
# the two files that hold GPU-marked tests (collecting the others needs the test extra, absent there)
step gpu_tests 60 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_imagination.py tests/test_real_memory.py
step smoke_cuda 60 python3 train.py params=smoke params.common.device=cuda params.common.epochs=2 \
    hydra.run.dir="$out/runs/smoke" wandb.mode=disabled
step atari_cuda 70 python3 train.py env=atari params=smoke params.common.device=cuda params.common.epochs=2 \
    hydra.run.dir="$out/runs/atari" wandb.mode=disabled
step recall_cuda 120 python3 train.py env=recall params=recall params.common.device=cuda \
    hydra.run.dir="$out/runs/recall" wandb.mode=disabled
if [ -d "$reference/models" ]; then
    step interleaved 110 python3 benchmarks/interleaved.py --reference "$reference" --device cuda --variant atari \
        --batches 16 64 256 1024 --precisions fp32 bf16 --warmup 1 --repeats 3 --json "$out/interleaved.json"
    step interleaved_compiled 80 env TORCH_LOGS=perf_hints python3 benchmarks/interleaved.py --reference "$reference" --device cuda \
        --variant atari --compile reduce-overhead --rows actor_critic imagination --batches 16 64 256 1024 --precisions bf16 \
        --repeats 2 --json "$out/interleaved_compiled.json"
else
    echo "=== interleaved: skipped, no reference src at $reference (benchmarks/gpu_wheels.sh makes .reference/)"
    rc[interleaved]=skipped rc[interleaved_compiled]=skipped secs[interleaved]=0 secs[interleaved_compiled]=0
fi
step runtime_crafter 50 python3 benchmarks/runtime.py params.common.device=cuda --warmup 1 --repeats 2 --quiet \
    --json "$out/runtime_crafter.json"
step runtime_atari 50 python3 benchmarks/runtime.py env=atari params=atari params.common.device=cuda --warmup 1 \
    --repeats 2 --quiet --json "$out/runtime_atari.json"

echo "=== summary"
for name in gpu_tests smoke_cuda atari_cuda recall_cuda interleaved interleaved_compiled runtime_crafter runtime_atari; do
    printf '%-12s rc=%-4s %4ss\n' "$name" "${rc[$name]}" "${secs[$name]}"
done
grep -E "passed|failed|skipped" "$out/gpu_tests.log" | tail -n 1
python3 - "$out" <<'PY'
import csv, json, sys
from pathlib import Path
out = Path(sys.argv[1])
for run in ("smoke", "atari", "recall"):
    metrics = out / "runs" / run / "metrics.csv"
    if not metrics.exists():
        print(f"{run}: no metrics.csv")
        continue
    rows = list(csv.DictReader(metrics.open()))
    curve = [(r["epoch"], round(float(r["collection/test/return_mean"]), 3)) for r in rows
             if r.get("collection/test/return_mean")]
    print(f"{run}: {len(rows)} epochs, test return by epoch {curve}")
    results = out / "runs" / run / "results.json"
    if results.exists():
        print(f"{run}: results.json score {json.loads(results.read_text())['score']}")
PY
grep -h -E "^\|" "$out/interleaved.log" "$out/interleaved_compiled.log" 2>/dev/null | head -n 60
echo "CUDA graphs skipped (TorchInductor's reasons): $(grep -c -i "skipping cudagraphs" "$out/interleaved_compiled.log" 2>/dev/null)"
grep -h -i "skipping cudagraphs" "$out/interleaved_compiled.log" 2>/dev/null | sort | uniq -c | head -n 5
grep -h -E "measured on|on this machine" "$out/runtime_crafter.log" "$out/runtime_atari.log" 2>/dev/null
ok=0
for name in gpu_tests smoke_cuda atari_cuda recall_cuda interleaved interleaved_compiled runtime_crafter runtime_atari; do [ "${rc[$name]}" = 0 ] || [ "${rc[$name]}" = skipped ] || ok=1; done
exit $ok
