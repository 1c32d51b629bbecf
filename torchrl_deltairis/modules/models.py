"""The container of the three Δ-IRIS networks and of their typed configs.

:class:`DeltaIrisModels` holds the tokenizer, the world model and the actor-critic (with its EMA
target); its state-dict keys are those of the reference's ``Agent``. :class:`ModelConfigs` holds the
configs they are built from and those of the two model losses; ``reference.configs_from_reference``
makes one from the ``params`` of a run's YAML (or a reference config).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from torchrl_deltairis.modules.actor_critic import ActorCriticConfig, ActorCriticWithTarget
from torchrl_deltairis.modules.tokenizer import Tokenizer, TokenizerConfig
from torchrl_deltairis.modules.world_model import WorldModel, WorldModelConfig
from torchrl_deltairis.objectives.tokenizer_loss import TokenizerLossConfig
from torchrl_deltairis.objectives.world_model_loss import WorldModelLossConfig

__all__ = ["DeltaIrisModels", "ModelConfigs"]


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
