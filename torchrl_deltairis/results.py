"""``results.json``: what a finished run scored, in the run-record format ``benchmarks/aggregate.py`` reads.

Written (atomically) at the end of the last epoch, after its evaluation; a run folder without it is not
finished. Fields::

    agent, game (env.train.id as configured), family (atari | crafter | gym), seed, epoch,
    score (mean return of the final evaluation's test episodes), returns (each test episode's),
    human_normalized_score (Atari only, else null),
    crafter (Crafter only): {"train": {...}, "test": {...}}, each {"episodes", "score", "success_rates"}

Crafter's ``train`` entry covers every training episode of the whole run (the Crafter paper's
definition), rebuilt from the per-epoch rows of ``metrics.csv``; ``test`` is the final evaluation's
episodes (the reference's). Success rates are in percent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torchrl_deltairis.data.atomic_io import write_json_atomic
from torchrl_deltairis.envs import CRAFTER_ACHIEVEMENTS, env_config
from torchrl_deltairis.envs.atari import human_normalized_score

AGENT = "torchrl_deltairis"
RESULTS_FILE = "results.json"
TRAIN, TEST = "collection/train/", "collection/test/"


def _number(value: Any) -> float | None:
    """A metrics cell (a float, or a string read back from metrics.csv; empty when not logged)."""
    if value is None or value == "":
        return None
    return float(value)


def crafter_summary(rows: Sequence[Mapping[str, Any]], prefix: str) -> dict[str, Any] | None:
    """Success rates and score over the episodes of all ``rows`` (per-epoch metrics), weighting each
    epoch's rates by its number of finished episodes; None when no episode finished."""
    unlocked = dict.fromkeys(CRAFTER_ACHIEVEMENTS, 0.0)
    episodes = 0.0
    for row in rows:
        n = _number(row.get(f"{prefix}episodes"))
        if not n or _number(row.get(f"{prefix}achievements/{CRAFTER_ACHIEVEMENTS[0]}")) is None:
            continue
        episodes += n
        for name in CRAFTER_ACHIEVEMENTS:
            unlocked[name] += _number(row[f"{prefix}achievements/{name}"]) * n / 100.0
    if not episodes:
        return None
    rates = {name: 100.0 * count / episodes for name, count in unlocked.items()}
    score = math.exp(sum(math.log1p(r) for r in rates.values()) / len(rates)) - 1.0
    return {"episodes": int(round(episodes)), "score": score, "success_rates": rates}


def run_results(env_cfg: Mapping[str, Any], seed: int, epoch: int, test_returns: Sequence[float],
                history: Sequence[Mapping[str, Any]], final: Mapping[str, Any]) -> dict[str, Any]:
    """The record of a finished run: ``history`` is every epoch's metrics (the last one included),
    ``final`` the last epoch's (with its evaluation's ``collection/test/*``)."""
    family = env_config(env_cfg).__class__.__name__
    family = {"AtariConfig": "atari", "CrafterConfig": "crafter", "GymConfig": "gym"}[family]
    if not test_returns:
        raise ValueError("the final evaluation finished no test episode: there is no score to record")
    score = sum(test_returns) / len(test_returns)
    game = str(env_cfg["id"])
    record: dict[str, Any] = {
        "agent": AGENT, "game": game, "family": family, "seed": int(seed), "epoch": int(epoch),
        "score": score, "returns": [float(r) for r in test_returns],
        "human_normalized_score": human_normalized_score(game, score) if family == "atari" else None,
    }
    if family == "crafter":
        record["crafter"] = {"train": crafter_summary(history, TRAIN), "test": crafter_summary([final], TEST)}
    return record


def write_results(run_dir: str | Path, record: Mapping[str, Any]) -> Path:
    path = Path(run_dir) / RESULTS_FILE
    write_json_atomic(path, dict(record))
    return path
