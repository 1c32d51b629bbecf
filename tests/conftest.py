"""Shared fixtures: the small parity-fixture configs (tests/data) with seeded random weights; a run
folder's metrics without the timings. The session's header says where it runs (CPU, torch build,
threads): float rounding, and so a failing greedy rollout or learning curve, depends on them."""

import csv
from pathlib import Path

import pytest
import torch

from torchrl_deltairis.machine import describe
from torchrl_deltairis.reference import DeltaIrisModels, configs_from_reference

DATA = Path(__file__).parent / "data"


def pytest_report_header(config):
    return describe()


def pytest_collection_modifyitems(config, items):
    """The learning checks first (minutes each): on pytest-xdist's workers they then run beside the
    rest of the suite instead of last."""
    items.sort(key=lambda item: "test_learning" not in item.nodeid)


def pytest_configure(config):
    """On pytest-xdist's workers (the README's test command runs 2 on 2 cores): one intra-op thread
    each, for the tests and for the runs they start (OpenMP threads beyond the free cores spin-wait:
    a 2-thread job beside another ran up to 8x slower)."""
    import os

    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"


def small_models(name: str = "crafter_small", seed: int = 0) -> DeltaIrisModels:
    """Δ-IRIS models of a small fixture's config (conv width 32, LSTM 64, 2-layer transformer)."""
    config = torch.load(DATA / f"{name}.pt", map_location="cpu", weights_only=True)["config"]
    torch.manual_seed(seed)
    return DeltaIrisModels(configs_from_reference(config)).eval()


@pytest.fixture(scope="module", params=["crafter_small", "atari_small"])
def tiny_models(request) -> DeltaIrisModels:
    return small_models(request.param)


def add_random_episodes(store, lengths, size: int = 32) -> None:
    """Whole episodes of random ``size``x``size`` frames and 2 actions, one per length, into ``store``."""
    from tensordict import TensorDict

    for length in lengths:
        ends = torch.zeros(length, 1, dtype=torch.bool)
        ends[-1] = True
        store.add_batch(TensorDict({"pixels": torch.randint(0, 256, (length, 3, size, size), dtype=torch.uint8),
                                    "action": torch.arange(length) % 2, ("next", "reward"): torch.zeros(length, 1),
                                    ("next", "terminated"): ends, ("next", "truncated"): torch.zeros_like(ends)},
                                   [length]))


def metrics_without_timings(run_dir: Path) -> list[dict[str, str]]:
    """A run folder's metrics.csv rows without the timings (seconds, steps per second)."""
    with open(run_dir / "metrics.csv", newline="") as file:
        return [{k: v for k, v in row.items() if not k.endswith(("seconds", "per_second"))}
                for row in csv.DictReader(file)]


# ------------------------------------------------------------------------------------------------
# Whole `python train.py` runs (tests/test_train_smoke.py, test_reproducibility.py, test_run_lifecycle.py)

import os  # noqa: E402  (this section's own imports: it was appended)
import subprocess  # noqa: E402
import sys  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# `params=smoke` at the smallest budgets that still cross every epoch boundary: every epoch collects
# and trains each component (one update on two segments), the evaluations play test episodes. A
# collection batch is 2 envs x 10 steps: epoch 1 takes two (a kill can land between them), later
# epochs one; what a run costs is then mostly its process, env workers and models starting.
TINY = ("params=smoke", "params.collection.train.steps_per_batch=10",
        "params.collection.train.config.num_steps_first_epoch=40",
        "params.collection.train.config.num_steps=20",
        "params.training.world_model.sequence_length=5",  # the tokenizer's too; max_blocks: 3 context frames + 3 steps - 1
        *(f"params.training.{c}.batch_num_samples=2" for c in ("tokenizer", "world_model", "actor_critic")),
        *(f"params.training.{c}.{k}=1" for c in ("tokenizer", "world_model")
          for k in ("steps_first_epoch", "steps_per_epoch")),
        "params.training.actor_critic.steps_per_epoch=1")
TINY_STEPS = (40, 20, 20)  # the steps each epoch of a TINY run stores (params=smoke: 3 epochs)
# Episodes of a few batches at most: test episodes end quickly, and training ones within every epoch
SHORT_EPISODES = {"crafter": ("env.train.max_episode_steps=15",),  # env.test is ${.train}
                  "atari": ("env.test.max_episode_steps=80",),  # raw frames: 20 agent steps
                  "gym": ()}  # Reach-v0: at most 8 steps
SMOKE = (*TINY, *SHORT_EPISODES["crafter"])  # the shared Crafter run (`smoke_runs`): seed 0, 3 epochs


# The environment of every run: one intra-op thread. Runs go side by side on 2 cores, and threads beyond
# the free cores spin-wait: an offline run (no env workers, whose start drops torch to one thread) took
# 3-4x longer with two threads on a busy machine. The runs compared with each other share it.
RUN_ENV = {"WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}


def start_train(run_dir: Path, *overrides: str, env: dict | None = None) -> subprocess.Popen:
    """`python train.py hydra.run.dir=run_dir wandb.mode=disabled *overrides` in its own process group
    (a kill of the group takes its env workers too); stderr goes to ``stderr_of(proc)``'s file, which
    never fills up as a pipe nobody reads would."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    err = run_dir.parent / f"{run_dir.name}.stderr"
    env = {**os.environ, **RUN_ENV, "HYDRA_FULL_ERROR": "1", **(env or {})}
    with open(err, "a") as stderr:
        proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={run_dir}",
                                 "wandb.mode=disabled", *overrides], cwd=run_dir.parent, env=env,
                                stdout=subprocess.DEVNULL, stderr=stderr, text=True, start_new_session=True)
    proc.stderr_path = err
    return proc


def stderr_of(proc: subprocess.Popen) -> str:
    """The end of what a process of ``start_train`` wrote to stderr so far."""
    return proc.stderr_path.read_text()[-3000:]


def finish(*procs: subprocess.Popen, timeout: float = 600) -> None:
    """Waits for every process; each must exit 0."""
    for proc in procs:
        proc.wait(timeout=timeout)
        assert proc.returncode == 0, stderr_of(proc)


_SMOKE_RUNS: list[tuple[Path, Path]] = []  # once per process: pytest-xdist may tear fixtures down between tests


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two unkilled `SMOKE` runs (Crafter, seed 0, 3 epochs), side by side (2 cores): the run folder
    whose artifacts tests/test_train_smoke.py checks and trains offline from, and its same-seed twin,
    which tests/test_reproducibility.py compares it with. Shared by the session: read them only."""
    if not _SMOKE_RUNS:
        base = tmp_path_factory.mktemp("smoke")
        runs = (base / "run", base / "twin")
        finish(*[start_train(run, *SMOKE) for run in runs])
        _SMOKE_RUNS.append(runs)
    return _SMOKE_RUNS[0]
