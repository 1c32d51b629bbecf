"""Every check of a run's config before any work: the typed tree's (:mod:`torchrl_deltairis.config`: each
key, type and range, and the values that depend on each other) and the checkpoint it names. Each bad
value is a one-line error naming the key, the value and what was expected.
"""

from __future__ import annotations

from typing import Any

from torchrl_deltairis.checkpoint import read_torch_file
from torchrl_deltairis.config import RunConfig


def validate_config(cfg: Any) -> RunConfig:
    """The run's typed config (``RunConfig.from_hydra``), once the checkpoint it starts from, if any,
    is read and found to be a state_dict. Called first, so that a bad override fails in a second."""
    run = RunConfig.from_hydra(cfg)
    path = run.initialization.path_to_checkpoint
    if path:
        state = read_torch_file(path, "params.initialization.path_to_checkpoint")
        if not isinstance(state, dict):
            raise ValueError(f"params.initialization.path_to_checkpoint={path!r} holds a {type(state).__name__}; "
                             "expected a state_dict (a run's checkpoints/last.pt or a reference agent state_dict)")
    return run
