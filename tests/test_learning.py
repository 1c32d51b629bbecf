"""It learns: `python train.py env=reach params=reach` (the whole agent: tokenizer, world model,
actor-critic trained in imagination only) reaches >= 80 % of the optimal return on the shipped Reach
task, where the uniform random policy gets under 40 %. Seeded; a few minutes on 2 CPU cores."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from torchrl_deltairis.envs.reach import Reach, random_success_rate

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_reach_random_play_is_clearly_below_the_optimum():
    optimum = Reach(grid=2, max_steps=2).optimal_return()
    assert random_success_rate(episodes=4000, grid=2, max_steps=2) < 0.4 * optimum


def test_the_agent_learns_reach(tmp_path):
    run_dir = tmp_path / "reach"
    env = {**os.environ, "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "env=reach", "params=reach",
                           f"hydra.run.dir={run_dir}", "wandb.mode=disabled"], cwd=tmp_path, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(run_dir / "metrics.csv", newline="") as file:
        curve = [(int(row["epoch"]), float(row["collection/test/return_mean"]))
                 for row in csv.DictReader(file) if row.get("collection/test/return_mean")]
    print("learning curve (epoch, mean test return):", curve)
    results = json.loads((run_dir / "results.json").read_text())
    optimum = Reach(grid=2, max_steps=2).optimal_return()
    assert results["score"] >= 0.8 * optimum, curve
