"""The three networks of a run: built from ``params.{tokenizer,world_model,actor_critic}`` (parsed into
``RunConfig.models``) on the run's device and execution (memory format, convolution chunks, compile),
or initialised from a checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch

from torchrl_deltairis.checkpoint import read_torch_file
from torchrl_deltairis.config import InitializationConfig, RunConfig
from torchrl_deltairis.modules.models import compile_models, configure_execution, resolve_execution
from torchrl_deltairis.reference import DeltaIrisModels, ReferenceCheckpointError, convert_reference_state_dict


def make_models(run: RunConfig, num_actions: int, device: torch.device | None = None) -> DeltaIrisModels:
    """The three networks for an env of ``num_actions`` actions, on ``device`` (default: the run's) in
    the run's memory format and convolution chunks, compiled if asked."""
    device = run.device if device is None else torch.device(device)
    execution = run.execution if device == run.device else resolve_execution(
        device, run.common.memory_format, run.common.conv_batch_chunk, run.training.imagination_bf16)
    models = configure_execution(DeltaIrisModels(run.models.with_actions(num_actions)).to(device), execution)
    return compile_models(models, run.common.compile)


def initialize_models(models: DeltaIrisModels, init: InitializationConfig) -> list[str]:
    """``params.initialization``: loads the chosen parts (``load_tokenizer``, ``load_world_model``,
    ``load_actor_critic``) from a reference-format checkpoint (a run's ``checkpoints/last.pt``, the
    reference's agent state_dict, or our ``state.pt``). Returns the parts loaded."""
    if not init.path_to_checkpoint:
        return []
    path = Path(init.path_to_checkpoint).expanduser()
    state = read_torch_file(path, "params.initialization.path_to_checkpoint")
    for wrapper in ("models", "state_dict"):  # our state.pt, a parity fixture
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    loaded = []
    for part in ("tokenizer", "world_model", "actor_critic"):
        if not getattr(init, f"load_{part}"):
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
