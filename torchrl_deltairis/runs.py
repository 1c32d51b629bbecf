"""A finished (or interrupted) run folder as Python objects: ``load_run("path/to/run")``.

A run folder written by ``train.py`` holds its resolved config (``config/trainer.yaml``), its weights
(``checkpoints/last.pt``, the reference's state-dict layout) and its episode stores
(``dataset/train``, ``dataset/test``). :func:`load_run` gives the models on a device, the config as a
plain dict and the stores reopened as they were, read-only by convention: what the README's TorchRL
examples start from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from torchrl_deltairis.data import EpisodeStore
from torchrl_deltairis.reference import DeltaIrisModels

__all__ = ["FinishedRun", "load_run"]


@dataclass(frozen=True)
class FinishedRun:
    run_dir: Path
    cfg: dict[str, Any]
    """the run's resolved config: ``cfg["params"]`` (the preset), ``cfg["env"]`` (its envs)"""
    models: DeltaIrisModels
    """the tokenizer, world model and actor-critic of ``checkpoints/last.pt``, in eval mode"""

    @property
    def params(self) -> dict[str, Any]:
        return self.cfg["params"]

    def store(self, split: str = "train") -> EpisodeStore:
        """The run's episode store of ``split`` (``train`` or ``test``), reopened with what it held."""
        if split not in ("train", "test"):
            raise ValueError(f"split={split!r}; expected 'train' or 'test'")
        return EpisodeStore(self.run_dir / "dataset" / split)


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> FinishedRun:
    """The run folder ``run_dir``: its config, its models on ``device`` and its stores. One line of
    error if it is not a run folder with a checkpoint."""
    from torchrl_deltairis.play.loading import PlayError, load_run as load_for_play

    run_dir = Path(run_dir)
    try:
        loaded = load_for_play(run_dir, torch.device(device))
    except PlayError as err:
        raise ValueError(str(err)) from None
    return FinishedRun(run_dir, loaded.config, loaded.models)
