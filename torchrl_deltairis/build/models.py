"""The three networks of a run: built from ``params.{tokenizer,world_model,actor_critic}`` on the run's
device and execution (memory format, convolution chunks, compile), or initialised from a checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from torchrl_deltairis.checkpoint import read_torch_file
from torchrl_deltairis.modules.models import Execution, compile_models, configure_execution, resolve_execution
from torchrl_deltairis.reference import (
    DeltaIrisModels,
    ReferenceCheckpointError,
    configs_from_reference,
    convert_reference_state_dict,
)


def execution_of(cfg: DictConfig, device: torch.device) -> Execution:
    """``params.common.memory_format`` and ``conv_batch_chunk`` (each ``auto`` or absent resolved for
    ``device``) and ``params.training.imagination_bf16`` (absent: false), by ``modules.models.resolve_execution``."""
    return resolve_execution(device, cfg.params.common.get("memory_format", "auto"),
                             cfg.params.common.get("conv_batch_chunk", "auto"),
                             cfg.params.training.get("imagination_bf16", False))


def make_models(cfg: DictConfig, num_actions: int, device: torch.device) -> DeltaIrisModels:
    """The three networks from ``params.{tokenizer,world_model,actor_critic}`` (the reference's layout),
    on ``device`` in the run's memory format and convolution chunks, compiled if asked."""
    configs = configs_from_reference(OmegaConf.to_container(cfg.params, resolve=True), num_actions=num_actions)
    models = configure_execution(DeltaIrisModels(configs).to(device), execution_of(cfg, device))
    return compile_models(models, cfg.params.common.get("compile", False))


def initialize_models(models: DeltaIrisModels, cfg: DictConfig) -> list[str]:
    """``params.initialization``: loads the chosen parts (``load_tokenizer``, ``load_world_model``,
    ``load_actor_critic``) from a reference-format checkpoint (a run's ``checkpoints/last.pt``, the
    reference's agent state_dict, or our ``state.pt``). Returns the parts loaded."""
    init = cfg.params.initialization
    if not init.get("path_to_checkpoint"):
        return []
    path = Path(init.path_to_checkpoint).expanduser()
    state = read_torch_file(path, "params.initialization.path_to_checkpoint")
    for wrapper in ("models", "state_dict"):  # our state.pt, a parity fixture
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    loaded = []
    for part in ("tokenizer", "world_model", "actor_critic"):
        if not init.get(f"load_{part}", True):
            continue
        prefix = f"{part}."
        sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not sub:
            raise ValueError(f"params.initialization.path_to_checkpoint={str(path)!r} holds no {part} weights "
                             f"(no key starts with {prefix!r}); set params.initialization.load_{part}=false")
        module = getattr(models, part)
        try:
            converted = convert_reference_state_dict(sub, module)
        except ReferenceCheckpointError as err:  # one line: the first problem, and how many more
            problems = [line.strip() for line in str(err).splitlines()[1:] if line.strip()] or [str(err)]
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise ValueError(f"params.initialization.path_to_checkpoint={str(path)!r} is a checkpoint of another "
                             f"model: {part}.{problems[0].removeprefix('key ')}{more}") from None
        module.load_state_dict(converted)
        loaded.append(part)
    return loaded
