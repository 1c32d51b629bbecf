"""The Δ-IRIS CNN-LSTM actor-critic on pixels, and the container holding its EMA target copy.

Reference: delta-iris ``src/models/actor_critic/cnn_lstm_actor_critic.py`` and ``actor_critic.py``.
A frame CNN, flattened, feeds an LSTM cell; linear heads give the policy logits and the value
(255-bin two-hot logits over symlog returns, or a scalar). The critic head starts at zero.
The recurrent state is an explicit input/output, never module state.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import einops
import torch
import torch.nn as nn
from einops.layers.torch import Rearrange

from torchrl_deltairis.modules.convnet import FrameCnnConfig, FrameEncoder

__all__ = ["ActorCriticConfig", "CnnLstmActorCritic", "ActorCriticOutput", "ActorCriticWithTarget"]

_VALUE_HEADS = ("two_hot", "scalar")


@dataclass
class ActorCriticConfig:
    """Configuration of :class:`CnnLstmActorCritic`; defaults are the shipped Crafter config."""

    num_actions: int = 17
    frame_encoder_config: FrameCnnConfig = field(default_factory=lambda: FrameCnnConfig(3, 16, 32))
    image_size: int = 64
    lstm_input_dim: int = 1024
    """LSTM input width = flattened CNN output (hard-coded 1024 in the reference)"""
    lstm_dim: int = 512
    """LSTM hidden width (hard-coded 512 in the reference)"""
    value_head: Literal["two_hot", "scalar"] = "two_hot"
    """'two_hot': 255-bin value logits (Crafter); 'scalar': one value trained by MSE (Atari)"""
    num_value_buckets: int = 255
    zero_init_critic: bool = True
    """start the critic head at zero (weights and bias), as the reference does"""

    def __post_init__(self) -> None:
        if self.value_head not in _VALUE_HEADS:
            raise ValueError(f"value_head={self.value_head!r}; valid choices are {list(_VALUE_HEADS)}")
        c = self.frame_encoder_config
        res = self.image_size // 2 ** c.num_downsamplings
        if res * res * c.latent_dim != self.lstm_input_dim:
            raise ValueError(f"lstm_input_dim={self.lstm_input_dim} but the frame CNN gives "
                             f"{res}·{res}·{c.latent_dim} = {res * res * c.latent_dim}")

    @property
    def num_value_outputs(self) -> int:
        return self.num_value_buckets if self.value_head == "two_hot" else 1


class ActorCriticOutput(NamedTuple):
    logits_actions: torch.Tensor
    """[B, A] (or [B, T, A] from :meth:`CnnLstmActorCritic.unroll`)"""
    logits_values: torch.Tensor
    """[B, 255] or [B, 1] (with a time dim from ``unroll``)"""
    hx: torch.Tensor
    """[B, lstm_dim] new hidden state"""
    cx: torch.Tensor
    """[B, lstm_dim] new cell state"""


class CnnLstmActorCritic(nn.Module):
    """One step: frame ``[B, 3, H, W]`` in [0, 1] and state (hx, cx) → logits, value logits, new state."""

    def __init__(self, config: ActorCriticConfig) -> None:
        super().__init__()
        self.config = config
        self.cnn = nn.Sequential(FrameEncoder(config.frame_encoder_config), Rearrange("b c h w -> b (h w c)"))
        self.lstm = nn.LSTMCell(config.lstm_input_dim, config.lstm_dim)
        self.actor_linear = nn.Linear(config.lstm_dim, config.num_actions)
        self.critic_linear = nn.Linear(config.lstm_dim, config.num_value_outputs)
        if config.zero_init_critic:
            nn.init.zeros_(self.critic_linear.weight)
            nn.init.zeros_(self.critic_linear.bias)

    def initial_state(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero (hx, cx) ``[B, lstm_dim]`` on the device and dtype of ``frames`` ``[B, ...]``."""
        zeros = frames.new_zeros(frames.size(0), self.config.lstm_dim)
        return zeros, zeros.clone()

    def forward(self, frames: torch.Tensor, hx: torch.Tensor | None = None,
                cx: torch.Tensor | None = None) -> ActorCriticOutput:
        assert frames.ndim == 4, f"expected frames [B, C, H, W], got {tuple(frames.shape)}"
        if hx is None or cx is None:
            hx, cx = self.initial_state(frames)
        assert hx.shape == cx.shape == (frames.size(0), self.config.lstm_dim), (
            f"expected hx, cx [{frames.size(0)}, {self.config.lstm_dim}], "
            f"got {tuple(hx.shape)}, {tuple(cx.shape)}")
        hx, cx = self.lstm(self.cnn(frames), (hx, cx))
        return ActorCriticOutput(self.actor_linear(hx), self.critic_linear(hx), hx, cx)

    def unroll(self, frames: torch.Tensor, hx: torch.Tensor | None = None,
               cx: torch.Tensor | None = None) -> ActorCriticOutput:
        """Steps over ``frames`` ``[B, T, C, H, W]``; outputs per step ``[B, T, ...]``, final state."""
        assert frames.ndim == 5, f"expected frames [B, T, C, H, W], got {tuple(frames.shape)}"
        features = einops.rearrange(self.cnn(einops.rearrange(frames, "b t c h w -> (b t) c h w")),
                                    "(b t) f -> b t f", b=frames.size(0))  # the CNN runs once, batched
        if hx is None or cx is None:
            hx, cx = self.initial_state(frames)
        hiddens = []
        for t in range(frames.size(1)):
            hx, cx = self.lstm(features[:, t], (hx, cx))
            hiddens.append(hx)
        h = torch.stack(hiddens, dim=1)  # [B, T, lstm_dim]
        return ActorCriticOutput(self.actor_linear(h), self.critic_linear(h), hx, cx)


class ActorCriticWithTarget(nn.Module):
    """The trained network (``model``) and its EMA copy (``target_model``, no gradients).

    State-dict keys are ``model.*`` and ``target_model.*``, as under ``actor_critic.`` in the
    reference checkpoints. The EMA moves through TorchRL's ``SoftUpdate`` over the loss that owns it
    (``objectives.actor_critic_loss.make_target_updater``).
    """

    def __init__(self, config: ActorCriticConfig) -> None:
        super().__init__()
        self.config = config
        self.model = CnnLstmActorCritic(config)
        self.target_model = copy.deepcopy(self.model).requires_grad_(False)

    def forward(self, *args, **kwargs) -> ActorCriticOutput:
        return self.model(*args, **kwargs)
