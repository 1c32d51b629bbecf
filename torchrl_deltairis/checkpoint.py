"""Run checkpoints: written atomically, checked against the run's config when read back.

``checkpoints/state.pt`` holds everything a resume needs (epoch, models, optimizers, sampler counts
and generators, collector state, RNG states, and the config that wrote it); ``checkpoints/last.pt``
holds the models alone, in the reference's key format (``tokenizer.*``, ``world_model.*``,
``actor_critic.model.*``, ``actor_critic.target_model.*``), for the play tool and for other code that
reads the reference's checkpoints. Both are written to a temporary file, then renamed: a kill at any
moment leaves the previous checkpoint or the new one, never a torn file. The episode store persists
on its own (``dataset/``) and is not copied.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from torchrl_deltairis.data.atomic_io import torch_save_atomic

FORMAT = "torchrl_deltairis.checkpoint/1"
STATE_FILE, MODELS_FILE = "state.pt", "last.pt"


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed by this run (missing, another format, another config)."""


def read_torch_file(path: str | Path, what: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, or a one-line ``CheckpointError`` naming
    ``what`` (the key or argument the path came from), the path and the reason (torch's own message
    is many lines: its first line only)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{what}={str(path)!r} is not a file; expected a checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip, version and weights-only errors all mean the same to the user
        reason = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise CheckpointError(f"{what}={str(path)!r} is not a checkpoint torch can read ({reason[:160]})") from None


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, Mapping):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def config_differences(saved: Mapping, current: Mapping, ignore: tuple[str, ...] = ()) -> list[str]:
    """``["key: saved -> current", ...]`` over the leaves of two nested configs, skipping keys that
    start with one of ``ignore`` (settings a resume may change, such as the logger's)."""
    a, b = _flatten(saved), _flatten(current)
    rows = []
    for key in sorted(set(a) | set(b)):
        if key.startswith(ignore):
            continue
        if a.get(key, "<missing>") != b.get(key, "<missing>"):
            rows.append(f"{key}: {a.get(key, '<missing>')!r} -> {b.get(key, '<missing>')!r}")
    return rows


def save_checkpoint(directory: str | Path, state: dict[str, Any], models_state_dict: dict[str, torch.Tensor],
                    config: Mapping, *, resumable: bool = True) -> None:
    """Writes ``last.pt`` (the models) then ``state.pt`` (the resume state, pointing at this epoch).

    ``resumable=False`` (``params.common.do_checkpoint: false``, as the reference) writes ``last.pt``
    only: the run cannot be resumed."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch_save_atomic(models_state_dict, directory / MODELS_FILE)
    if not resumable:
        return
    torch_save_atomic({"format": FORMAT, "config": dict(config), "models": models_state_dict, **state},
                      directory / STATE_FILE)


def load_checkpoint(directory: str | Path, config: Mapping, *,
                    ignore: tuple[str, ...] = ("wandb", "params.common.resume", "hydra")) -> dict[str, Any]:
    """Reads ``state.pt`` and checks that it was written with the same config (but ``ignore``d keys);
    a difference raises ``CheckpointError`` listing every differing key."""
    path = Path(directory) / STATE_FILE
    if not path.exists():
        raise CheckpointError(f"no checkpoint to resume at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} is not a {FORMAT} checkpoint (format {got!r})")
    diff = config_differences(state["config"], config, ignore)
    if diff:
        raise CheckpointError(f"{path} was written by a run with another config:\n  " + "\n  ".join(diff))
    return state
