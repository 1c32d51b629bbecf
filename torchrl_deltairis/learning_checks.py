"""The learning checks: whole runs of ``train.py`` (tokenizer, world model and actor-critic trained in
imagination only) on small pixel tasks that a working agent learns within minutes on 2 CPU cores, with
a bar that random or memoryless play cannot reach.

| check | command | bar | floor |
|---|---|---|---|
| ``reach`` | ``train.py env=reach params=reach`` | 80 % of the optimum | random play ~25 % |
| ``match`` | ``train.py env=match params=reach`` | 80 % of the optimum | a frame-blind (or collapsed) policy 50 % |
| ``match_side`` | ``... env=match env.train.kwargs.cue=side`` | 80 % | 50 % |
| ``recall`` | ``train.py env=recall params=recall`` | 90 % of the optimum | any memoryless policy 50 % |

``match`` and ``match_side`` run the Reach preset unchanged on another memoryless task (20-step
episodes, a reward at every step): a preset that learns only its own task is not evidence that the
agent learns. A run passes when the better of its last two evaluations (64 greedy test episodes each)
reaches the bar. ``tests/test_learning.py`` runs the checks on one seed; ``python
benchmarks/learning_checks.py`` sweeps seeds and thread counts (float rounding differs with both, and
with the CPU: each acts as another seed) and prints the table the README shows.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CHECKS", "Check", "CheckResult", "read_check", "run_check"]

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Check:
    overrides: tuple[str, ...]
    optimum: float
    bar: float  # share of the optimum to reach
    floor: str  # what play without learning scores


CHECKS = {
    "reach": Check(("env=reach", "params=reach"), 1.0, 0.8, "random play ~0.25"),
    "match": Check(("env=match", "params=reach"), 20.0, 0.8, "frame-blind play 10"),
    "match_side": Check(("env=match", "params=reach", "env.train.kwargs.cue=side"), 20.0, 0.8,
                        "frame-blind play 10"),
    "recall": Check(("env=recall", "params=recall"), 1.0, 0.9, "memoryless play <= 0.5"),
}


@dataclass
class CheckResult:
    name: str
    seed: int
    threads: int
    curve: list[tuple[int, float]]  # (epoch, mean test return) at each evaluation
    entropy: list[tuple[int, float]] = field(default_factory=list)  # (epoch, policy entropy in imagination)
    reward_loss: list[tuple[int, float]] = field(default_factory=list)  # (epoch, world model's reward loss)
    seconds: float = 0.0
    returncode: int = 0
    stderr_tail: str = ""

    @property
    def check(self) -> Check:
        return CHECKS[self.name]

    @property
    def score(self) -> float:
        """The better of the last two evaluations."""
        return max((ret for _, ret in self.curve[-2:]), default=float("nan"))

    @property
    def passed(self) -> bool:
        return self.returncode == 0 and self.score >= self.check.bar * self.check.optimum


def _column(rows: list[dict[str, str]], key: str) -> list[tuple[int, float]]:
    return [(int(row["epoch"]), float(row[key])) for row in rows if row.get(key)]


def run_check(name: str, run_dir: Path, *, seed: int = 0, threads: int | None = None,
              extra: tuple[str, ...] = (), timeout: float = 1800) -> CheckResult:
    """Runs one check in a fresh process (``threads``: its intra-op thread count, OMP_NUM_THREADS)."""
    check = CHECKS[name]
    env = {**os.environ, "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    run_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(ROOT / "train.py"), *check.overrides, f"params.common.seed={seed}",
               f"hydra.run.dir={run_dir}", "wandb.mode=disabled", *extra]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=run_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, timeout=timeout)
    return read_check(name, run_dir, seed=seed, threads=threads, seconds=time.perf_counter() - start,
                      returncode=proc.returncode, stderr_tail=proc.stderr[-3000:])


def read_check(name: str, run_dir: Path, *, seed: int, threads: int | None, seconds: float = 0.0,
               returncode: int = 0, stderr_tail: str = "") -> CheckResult:
    """The result of a check's run from its folder's ``metrics.csv`` (a run without one has no curve;
    ``seconds`` 0: not known)."""
    result = CheckResult(name, seed, threads or 0, [], seconds=seconds, returncode=returncode,
                         stderr_tail=stderr_tail)
    metrics = run_dir / "metrics.csv"
    if metrics.exists():
        with open(metrics, newline="") as file:
            rows = list(csv.DictReader(file))
        result.curve = _column(rows, "collection/test/return_mean")
        result.entropy = _column(rows, "actor_critic/policy_entropy")
        result.reward_loss = _column(rows, "world_model/loss_rewards")
    return result


def results_json(results: list[CheckResult]) -> str:
    return json.dumps([{"check": r.name, "seed": r.seed, "threads": r.threads, "curve": r.curve,
                        "score": r.score, "passed": r.passed, "seconds": round(r.seconds, 1),
                        "entropy": r.entropy} for r in results], indent=1)
