"""The container of the three Δ-IRIS networks and of their typed configs.

:class:`DeltaIrisModels` holds the tokenizer, the world model and the actor-critic (with its EMA
target); its state-dict keys are those of the reference's ``Agent``. :class:`ModelConfigs` holds the
configs they are built from and those of the two model losses; ``reference.configs_from_reference``
makes one from the ``params`` of a run's YAML (or a reference config).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from torchrl_deltairis.modules.actor_critic import ActorCriticConfig, ActorCriticWithTarget
from torchrl_deltairis.modules.tokenizer import Tokenizer, TokenizerConfig
from torchrl_deltairis.modules.world_model import WorldModel, WorldModelConfig
from torchrl_deltairis.objectives.tokenizer_loss import TokenizerLossConfig
from torchrl_deltairis.objectives.world_model_loss import WorldModelLossConfig

__all__ = ["COMPILED_PARTS", "COMPILE_MODES", "DeltaIrisModels", "ModelConfigs", "compile_models",
           "valid_compile_mode"]

# The fixed-shape convolutional parts, where the FLOPs are (the tokenizer's decoder above all): compiled
# in place, so the state-dict keys do not change. The transformer, whose KV cache grows step by step
# in imagination, stays eager.
COMPILED_PARTS = ("tokenizer.encoder", "tokenizer.decoder", "tokenizer.frame_cnn", "world_model.frame_cnn",
                  "actor_critic.model.cnn", "actor_critic.target_model.cnn")
COMPILE_MODES = (False, True, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def valid_compile_mode(mode: object) -> bool:
    return isinstance(mode, bool) or (isinstance(mode, str) and mode in COMPILE_MODES)


@dataclass
class ModelConfigs:
    """Our configs for the three models and two losses, plus the actor-critic training hyperparameters."""

    tokenizer: TokenizerConfig
    world_model: WorldModelConfig
    actor_critic: ActorCriticConfig
    tokenizer_loss: TokenizerLossConfig = field(default_factory=TokenizerLossConfig)
    world_model_loss: WorldModelLossConfig = field(default_factory=WorldModelLossConfig)
    actor_critic_training: dict[str, Any] = field(default_factory=dict)
    """burn_in_length, imagination_horizon, gamma, lambda_, entropy_weight (for the imagination issue)"""


class DeltaIrisModels(nn.Module):
    """The three Δ-IRIS networks; state-dict keys are those of the reference's ``Agent``."""

    def __init__(self, configs: ModelConfigs) -> None:
        super().__init__()
        self.configs = configs
        self.tokenizer = Tokenizer(configs.tokenizer)
        self.world_model = WorldModel(configs.world_model)
        self.actor_critic = ActorCriticWithTarget(configs.actor_critic)


def compile_models(models: DeltaIrisModels, mode: bool | str = True, backend: str = "inductor") -> DeltaIrisModels:
    """``torch.compile`` of ``COMPILED_PARTS`` in place (``params.common.compile``): ``mode`` False does
    nothing; True is torch's default mode; a string is a ``torch.compile`` mode (``"reduce-overhead"``:
    CUDA graphs on a GPU). Each new input shape, grad mode and train/eval mode compiles once; the
    results equal eager's to float rounding (tests/test_compile.py)."""
    if not valid_compile_mode(mode):
        raise ValueError(f"params.common.compile={mode!r}; expected one of {list(COMPILE_MODES)}")
    if mode is False:
        return models
    # one part runs with and without gradients, in train and eval mode, at several batch sizes (after
    # a second size the batch becomes symbolic): more graphs than dynamo's default limit of 8
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    for path in COMPILED_PARTS:
        models.get_submodule(path).compile(mode=None if mode in (True, "default") else mode, backend=backend)
    return models
