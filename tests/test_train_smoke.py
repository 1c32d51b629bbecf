"""`python train.py params=smoke`: a whole run on CPU, its run folder, and resuming after a SIGKILL."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _train(run_dir: Path, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), "params=smoke", f"hydra.run.dir={run_dir}",
                             "wandb.mode=disabled", *overrides], cwd=run_dir.parent, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _epochs(run_dir: Path) -> list[int]:
    with open(run_dir / "metrics.csv", newline="") as file:
        return [int(row["epoch"]) for row in csv.DictReader(file)]


def _committed_steps(run_dir: Path) -> int:
    return json.loads((run_dir / "dataset" / "train" / "commit.json").read_text())["num_rows"] - 1


def test_smoke_run_writes_every_artifact(tmp_path):
    run_dir = tmp_path / "run"
    proc = _train(run_dir)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    for path in ("config/trainer.yaml", "checkpoints/state.pt", "checkpoints/last.pt", "metrics.csv",
                 "media/reconstructions/epoch_0002.png", "scripts/resume.sh",
                 "dataset/train/commit.json", "dataset/test/commit.json"):
        assert (run_dir / path).exists(), path
    assert _epochs(run_dir) == [1, 2, 3]
    with open(run_dir / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    for key in ("tokenizer/loss_reconstruction_l2", "world_model/loss_latents", "actor_critic/loss_values"):
        assert float(rows[-1][key]) == float(rows[-1][key]), key  # present and not NaN
    assert rows[1]["collection/test/return_mean"] != ""  # the evaluation of epoch 2 ran test episodes
    assert any(row["collection/train/return_mean"] != "" for row in rows)
    assert _committed_steps(run_dir) == 300 + 100 + 100
    models = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert {k.split(".")[0] for k in models} == {"tokenizer", "world_model", "actor_critic"}


def test_sigkill_then_resume_keeps_every_step_and_finishes(tmp_path):
    run_dir = tmp_path / "run"
    proc = _train(run_dir)
    state = run_dir / "checkpoints" / "state.pt"
    deadline = time.time() + 300
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before its first checkpoint"
    time.sleep(1.0)  # into epoch 2: collecting or training
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    steps_before = _committed_steps(run_dir)
    assert steps_before >= 300
    env = {**os.environ, "WANDB_SILENT": "true"}
    resumed = subprocess.run(["bash", str(run_dir / "scripts" / "resume.sh")], env=env, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _epochs(run_dir) == [1, 2, 3]
    assert _committed_steps(run_dir) >= steps_before + 200  # nothing lost, epochs 2 and 3 collected
    assert torch.load(state, weights_only=True)["epoch"] == 3
