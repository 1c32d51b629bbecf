"""Shared fixtures: the small parity-fixture configs (tests/data) with seeded random weights; a run
folder's metrics without the timings."""

import csv
from pathlib import Path

import pytest
import torch

from torchrl_deltairis.reference import DeltaIrisModels, configs_from_reference

DATA = Path(__file__).parent / "data"


def small_models(name: str = "crafter_small", seed: int = 0) -> DeltaIrisModels:
    """Δ-IRIS models of a small fixture's config (conv width 32, LSTM 64, 2-layer transformer)."""
    config = torch.load(DATA / f"{name}.pt", map_location="cpu", weights_only=True)["config"]
    torch.manual_seed(seed)
    return DeltaIrisModels(configs_from_reference(config)).eval()


@pytest.fixture(scope="module", params=["crafter_small", "atari_small"])
def tiny_models(request) -> DeltaIrisModels:
    return small_models(request.param)


def metrics_without_timings(run_dir: Path) -> list[dict[str, str]]:
    """A run folder's metrics.csv rows without the timings (seconds, steps per second)."""
    with open(run_dir / "metrics.csv", newline="") as file:
        return [{k: v for k, v in row.items() if not k.endswith(("seconds", "per_second"))}
                for row in csv.DictReader(file)]
