#!/usr/bin/env bash
# The GPU check (issue 12), one command on a CUDA machine, under 10 minutes in all (each step has a
# time limit: 90 + 120 + 180 + 90 + 120 s):
#   1. the GPU-marked tests (pytest -m gpu),
#   2. a 2-epoch smoke run with params.common.device=cuda (collection with the policy on the GPU at epoch 2),
#   3. the memory task (env=recall params=recall) on CUDA, with its greedy test score,
#   4. benchmarks/speed.py --device cuda (one repeat; imagination at B = 1, 16, 64, 256, 1024),
#   5. the compiled path's actor-critic and imagination rows in bf16 (speed.py --compile, default mode),
# then a summary. Outputs go to $OUT (the device tool's folder) or ./gpu_check_out.
# On the lent GPU machine (Python 3.12 with CUDA torch, no package index) first gather our other
# dependencies here with `bash benchmarks/gpu_wheels.sh`, then carry .whl: this script installs them.
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

# the two files that hold GPU-marked tests (collecting the others needs the test extra, absent there)
step gpu_tests 90 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_imagination.py tests/test_real_memory.py
step smoke_cuda 120 python3 train.py params=smoke params.common.device=cuda params.common.epochs=2 \
    hydra.run.dir="$out/runs/smoke" wandb.mode=disabled
step recall_cuda 180 python3 train.py env=recall params=recall params.common.device=cuda \
    hydra.run.dir="$out/runs/recall" wandb.mode=disabled
step speed_cuda 90 python3 benchmarks/speed.py --device cuda --repeats 1 --json "$out/speed_cuda.json"
step speed_compiled 120 python3 benchmarks/speed.py --device cuda --compile --steps actor_critic imagination \
    --precisions bf16 --repeats 1 --json "$out/speed_compiled.json"

echo "=== summary"
for name in gpu_tests smoke_cuda recall_cuda speed_cuda speed_compiled; do
    printf '%-12s rc=%-4s %4ss\n' "$name" "${rc[$name]}" "${secs[$name]}"
done
grep -E "passed|failed|skipped" "$out/gpu_tests.log" | tail -n 1
python3 - "$out" <<'PY'
import csv, json, sys
from pathlib import Path
out = Path(sys.argv[1])
for run in ("smoke", "recall"):
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
grep -E "^\|" "$out/speed_cuda.log" | head -n 40
ok=0
for name in gpu_tests smoke_cuda recall_cuda speed_cuda speed_compiled; do [ "${rc[$name]}" = 0 ] || ok=1; done
exit $ok
