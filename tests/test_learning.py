"""It learns: `python train.py env=reach params=reach` (the whole agent: tokenizer, world model,
actor-critic trained in imagination only) reaches >= 80 % of the optimal return on the shipped Reach
task, where the uniform random policy gets under 40 %; and `env=recall params=recall` scores >= 90 %
of the optimum on the Recall task, which no memoryless policy solves beyond 50 %: the policy's LSTM
state must travel through the real envs' steps (training collection and test episodes) as it does in
imagination. Seeded; a few minutes each on 2 CPU cores."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from torchrl_deltairis.envs.reach import Reach, random_success_rate
from torchrl_deltairis.envs.recall import Recall, memoryless_optimum

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_reach_random_play_is_clearly_below_the_optimum():
    optimum = Reach(grid=2, max_steps=2).optimal_return()
    assert random_success_rate(episodes=4000, grid=2, max_steps=2) < 0.4 * optimum


def train(tmp_path, name: str) -> tuple[dict, list[tuple[int, float]]]:
    """Runs `train.py env=NAME params=NAME`; returns results.json and the test curve (epoch, mean return)."""
    run_dir = tmp_path / name
    env = {**os.environ, "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), f"env={name}", f"params={name}",
                           f"hydra.run.dir={run_dir}", "wandb.mode=disabled"], cwd=tmp_path, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(run_dir / "metrics.csv", newline="") as file:
        curve = [(int(row["epoch"]), float(row["collection/test/return_mean"]))
                 for row in csv.DictReader(file) if row.get("collection/test/return_mean")]
    print(f"{name} learning curve (epoch, mean test return):", curve)
    return json.loads((run_dir / "results.json").read_text()), curve


def test_the_agent_learns_reach(tmp_path):
    """The better of the last two evaluations (epochs 35 and 40) reaches 80 % of the optimum. How fast
    the greedy policy gets there depends on the seed, and float rounding acts as another seed: with
    30 epochs, seeds 0 to 5 of this preset ended at [1.0, 1.0], [0.56, 0.7], [0.88, 1.0], [1.0, 1.0],
    [0.41, 0.44] and [0.33, 0.52] (epochs 25 and 30); with 40, seeds 0 to 4 read [1.0, 1.0] but for
    seed 4's [0.72, 1.0], and seed 5 [0.45, 0.56] (epochs 35 and 40). On 64x64 frames, three runs that
    differed only by rounding gave [0.61, 1.0], [0.86, 0.53] and [1.0, 0.86] (epochs 25 and 30)."""
    results, curve = train(tmp_path, "reach")
    optimum = Reach(grid=2, max_steps=2).optimal_return()
    assert [epoch for epoch, _ in curve[-2:]] == [35, 40] and results["score"] == pytest.approx(curve[-1][1])
    assert max(ret for _, ret in curve[-2:]) >= 0.8 * optimum, curve
    assert curve[0][1] < 0.5 * optimum, curve  # it had something to learn (random play: under 40 %)


def test_recall_needs_memory():
    """Every frame after the cue is the same whatever the cue: a memoryless policy answers blind."""
    frames = {}
    for cue in (0, 1):
        env = Recall(delay=1, num_cues=2)
        env.reset(seed=0)
        env.cue = cue
        seen, done = [env.render()], False
        while not done:
            frame, reward, done, _, _ = env.step(cue)
            seen.append(frame)
        assert reward == 1.0
        frames[cue] = seen
    assert (frames[0][0] != frames[1][0]).any()  # the cue ...
    assert all((a == b).all() for a, b in zip(frames[0][1:], frames[1][1:]))  # ... and nothing after it
    assert memoryless_optimum(2) == 0.5


def test_the_agent_learns_recall_with_its_memory(tmp_path):
    """The last evaluation (epoch 10) scores >= 90 % of the optimum. Seed 0 read 1.0 at epochs 5 and 10;
    seeds 1 to 3, tested every epoch, first read 1.0 at epochs 4, 5 and 2 and stayed at 0.98-1.0."""
    results, curve = train(tmp_path, "recall")
    optimum = Recall().optimal_return()
    assert results["score"] >= 0.9 * optimum, curve
