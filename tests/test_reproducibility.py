"""Same seed, same run: two `python train.py ... params.common.seed=3` runs of each env family
(Crafter, Atari, a gymnasium env) write identical stores and identical non-timing metrics, and
another seed changes them. (A resumed run against an unkilled one: tests/test_train_smoke.py.)"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import metrics_without_timings
from torchrl_deltairis.data import EpisodeStore

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

TINY = ("params=smoke", "params.common.seed=3", "params.common.epochs=2",
        "params.collection.train.config.num_steps_first_epoch=100", "params.collection.train.config.num_steps=50",
        "params.training.tokenizer.steps_first_epoch=2", "params.training.world_model.steps_first_epoch=2",
        "params.collection.test.config.num_episodes=1", "params.evaluation.every=2")
FAMILIES = {"crafter": (), "atari": ("env=atari",),
            "gym": ("env=gym",)}  # gymnasium's Reach-v0 (4x4 board) resized to the smoke models' 64x64


def _train(run_dir: Path, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={run_dir}", "wandb.mode=disabled",
                             *overrides], cwd=run_dir.parent, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _finish(*procs: subprocess.Popen) -> None:
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]


def _assert_same_store(a: Path, b: Path) -> None:
    first, second = EpisodeStore(a), EpisodeStore(b)
    assert first.num_steps == second.num_steps > 0 and torch.equal(first.lengths, second.lengths), (first, second)
    for episode in range(first.num_episodes):
        x, y = first.episode(episode), second.episode(episode)
        assert set(x.keys()) == set(y.keys())
        for key in x.keys():
            assert torch.equal(x[key], y[key]), (a, episode, key)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_same_seed_gives_the_same_run(tmp_path, family):
    runs = [tmp_path / name for name in ("first", "second")]
    _finish(*[_train(run, *TINY, *FAMILIES[family]) for run in runs])  # side by side: 2 cores
    first, second = (metrics_without_timings(run) for run in runs)
    assert [row["epoch"] for row in first] == ["1", "2"]
    assert first[1]["actor_critic/loss_values"] not in ("", "nan")  # the whole agent trained
    assert first[1]["collection/test/return_mean"] != ""  # and was tested
    for row_a, row_b in zip(first, second, strict=True):
        assert row_a == row_b, {k: (v, row_b[k]) for k, v in row_a.items() if v != row_b.get(k)}
    for split in ("train", "test"):
        _assert_same_store(runs[0] / "dataset" / split, runs[1] / "dataset" / split)
    if family == "gym":  # and a seed changes the run
        other = tmp_path / "other"
        _finish(_train(other, *TINY, *FAMILIES[family], "params.common.seed=4", "params.common.epochs=1"))
        assert metrics_without_timings(other)[0]["tokenizer/loss_reconstruction_l2"] != first[0]["tokenizer/loss_reconstruction_l2"]
