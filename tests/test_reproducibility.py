"""Same seed, same run: two `python train.py ...` runs of each env family (Crafter, Atari, a gymnasium
env) with the same seed write identical stores and identical non-timing metrics, and another seed
changes them. (A resumed run against an unkilled one: tests/test_train_smoke.py.)"""

from pathlib import Path

import pytest
import torch

from conftest import SHORT_EPISODES, TINY, finish, metrics_without_timings, start_train
from torchrl_deltairis.data import EpisodeStore

pytestmark = pytest.mark.slow

# Atari and gym: 2 epochs (the second trains the actor-critic and evaluates), seed 3, one test episode.
# Crafter: the session's two `smoke_runs` (seed 0, 3 epochs, two test episodes), which
# tests/test_train_smoke.py also reads.
REPRO = (*TINY, "params.common.seed=3", "params.common.epochs=2",
         "params.collection.test.config.num_episodes=1")
FAMILIES = {"crafter": None, "atari": ("env=atari", *SHORT_EPISODES["atari"]),
            "gym": ("env=gym", *SHORT_EPISODES["gym"])}  # Reach-v0 (4x4 board) at the smoke models' 64x64


def _assert_same_store(a: Path, b: Path) -> None:
    first, second = EpisodeStore(a), EpisodeStore(b)
    assert first.num_steps == second.num_steps > 0 and torch.equal(first.lengths, second.lengths), \
        (first, second)
    for episode in range(first.num_episodes):
        x, y = first.episode(episode), second.episode(episode)
        assert set(x.keys()) == set(y.keys())
        for key in x.keys():
            assert torch.equal(x[key], y[key]), (a, episode, key)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_same_seed_gives_the_same_run(tmp_path, family, request):
    if FAMILIES[family] is None:
        runs = request.getfixturevalue("smoke_runs")  # run side by side by the fixture (2 cores)
    else:
        runs = [tmp_path / name for name in ("first", "second")]
        procs = [start_train(run, *REPRO, *FAMILIES[family]) for run in runs]  # side by side: 2 cores
        if family == "gym":  # and a seed changes the run (started with them: 3 processes share the 2 cores)
            other = tmp_path / "other"
            procs.append(start_train(other, *REPRO, *FAMILIES[family], "params.common.seed=4",
                                     "params.common.epochs=1"))
        finish(*procs)
    first, second = (metrics_without_timings(run) for run in runs)
    assert [row["epoch"] for row in first] == (["1", "2", "3"] if family == "crafter" else ["1", "2"])
    assert first[1]["actor_critic/loss_values"] not in ("", "nan")  # the whole agent trained
    assert first[1]["collection/test/return_mean"] != ""  # and was tested
    for row_a, row_b in zip(first, second, strict=True):
        assert row_a == row_b, {k: (v, row_b[k]) for k, v in row_a.items() if v != row_b.get(k)}
    for split in ("train", "test"):
        _assert_same_store(runs[0] / "dataset" / split, runs[1] / "dataset" / split)
    if family == "gym":
        key = "tokenizer/loss_reconstruction_l2"
        assert metrics_without_timings(other)[0][key] != first[0][key]
