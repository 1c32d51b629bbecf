"""Δ-IRIS training losses as TorchRL ``LossModule``s (the actor-critic loss comes with imagination)."""

from torchrl_deltairis.objectives.tokenizer_loss import TokenizerLoss, TokenizerLossConfig
from torchrl_deltairis.objectives.world_model_loss import WorldModelLoss, WorldModelLossConfig

__all__ = ["TokenizerLoss", "TokenizerLossConfig", "WorldModelLoss", "WorldModelLossConfig"]
