"""The Δ-IRIS world model's training loss as a TorchRL ``LossModule``.

Reference: delta-iris ``src/models/world_model.py`` (``compute_loss``): next-token, reward and end
cross-entropies over teacher-forced segments, the tokens coming from the (frozen) tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass

import einops
import torch
import torch.nn.functional as F
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule

from torchrl_deltairis import functional, keys
from torchrl_deltairis.checked import setting
from torchrl_deltairis.functional import masked_mean, pixels_to_float
from torchrl_deltairis.modules.tokenizer import Tokenizer
from torchrl_deltairis.modules.world_model import WorldModel

__all__ = ["WorldModelLossConfig", "WorldModelLoss"]


@dataclass
class WorldModelLossConfig:
    """Weights and options of the world-model loss (Crafter defaults; Atari uses 0.1 / 1.0 / 0.1)."""

    latents_weight: float = setting(1.0, doc="weight of the next-token cross-entropy", low=0)
    rewards_weight: float = setting(1.0, doc="weight of the reward cross-entropy", low=0)
    ends_weight: float = setting(1.0, doc="weight of the end cross-entropy", low=0)
    two_hot_low: float = functional.TWO_HOT_LOW
    """lower end of the two-hot reward buckets (symlog space)"""
    two_hot_high: float = functional.TWO_HOT_HIGH
    mask_latents_with_next_padding: bool = True
    """True (docs/departures.md#bugs-fixed): a transition's tokens are targets only if both its frames are real; False is the
    reference's behaviour (only the first frame must be real)"""


def _as_bt(x: torch.Tensor, shape: torch.Size, name: str) -> torch.Tensor:
    if x.ndim == len(shape) + 1 and x.size(-1) == 1:
        x = x.squeeze(-1)
    assert x.shape == shape, f"{name} must be [B, T] = {tuple(shape)} (or [B, T, 1]), got {tuple(x.shape)}"
    return x


class WorldModelLoss(LossModule):
    """World-model loss (Micheli et al., "Efficient World Models with Context-Aware Tokenization", ICML 2024).

    Reads segments ``[B, T]``: ``"pixels"`` (uint8 or float in [0, 1]), ``"action"``, ``"reward"`` (r_t,
    received after a_t), ``"terminated"`` (the end target after a_t) and ``"mask_padding"``. If the
    input holds ``"tokens"`` ``[B, T, K]`` (those of the transition t → t+1 at step t; the last step's
    are ignored) or ``[B, T-1, K]``, they are used, otherwise the tokenizer computes them (no
    gradient, no codebook update, whatever its mode).

    Returns ``loss_latents``, ``loss_rewards``, ``loss_ends`` (weighted) and the detached metric
    ``latent_accuracy``. Rewards are two-hot over symlog(r) or sign classes, as the world model's
    reward head says. The tokenizer is referenced, not registered: it is not among this loss's parameters.

    Args:
        world_model: the :class:`~torchrl_deltairis.modules.WorldModel` to train.
        tokenizer: the trained :class:`~torchrl_deltairis.modules.Tokenizer`.
        config: loss weights and options.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from torchrl_deltairis.modules import (FrameCnnConfig, Tokenizer, TokenizerConfig,
        ...     TransformerConfig, WorldModel, WorldModelConfig)
        >>> cnn = dict(num_channels=8, mult=[1, 2], down=[1, 1], num_groups=4)
        >>> tok = Tokenizer(TokenizerConfig(num_actions=3, image_size=16, codebook_size=8, codebook_dim=4,
        ...     encoder_config=FrameCnnConfig(7, 4, **cnn), decoder_config=FrameCnnConfig(3, 10, **cnn),
        ...     frame_cnn_config=FrameCnnConfig(3, 2, **cnn))).eval()
        >>> wm = WorldModel(WorldModelConfig(num_actions=3, latent_vocab_size=8, image_size=16,
        ...     reward_head="sign", transformer_config=TransformerConfig(max_blocks=4, num_layers=1, num_heads=2, embed_dim=32),
        ...     frame_cnn_config=FrameCnnConfig(3, 2, **cnn)))
        >>> td = TensorDict(pixels=torch.randint(0, 256, (2, 3, 3, 16, 16), dtype=torch.uint8),
        ...     action=torch.randint(0, 3, (2, 3)), reward=torch.tensor([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]),
        ...     terminated=torch.zeros(2, 3, dtype=torch.bool),
        ...     mask_padding=torch.ones(2, 3, dtype=torch.bool), batch_size=[2, 3])
        >>> out = WorldModelLoss(wm, tok)(td)
        >>> sorted(out.keys())
        ['latent_accuracy', 'loss_ends', 'loss_latents', 'loss_rewards']
        >>> sum(v for k, v in out.items() if k.startswith("loss_")).backward()
    """

    @dataclass
    class _AcceptedKeys:
        """Input keys, all with batch dims [B, T]."""

        pixels: NestedKey = keys.PIXELS
        action: NestedKey = keys.ACTION
        reward: NestedKey = keys.REWARD
        terminated: NestedKey = keys.TERMINATED
        mask_padding: NestedKey = keys.MASK_PADDING
        tokens: NestedKey = keys.TOKENS

    tensor_keys: _AcceptedKeys
    default_keys = _AcceptedKeys
    out_keys = ["loss_latents", "loss_rewards", "loss_ends", "latent_accuracy"]

    def __init__(self, world_model: WorldModel, tokenizer: Tokenizer,
                 config: WorldModelLossConfig | None = None) -> None:
        super().__init__()
        self.world_model = world_model
        self.__dict__["tokenizer"] = tokenizer  # not a submodule: not trained by this loss
        self.config = config if config is not None else WorldModelLossConfig()

    @property
    def in_keys(self) -> list[NestedKey]:
        k = self.tensor_keys
        return [k.pixels, k.action, k.reward, k.terminated, k.mask_padding]

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        """No value estimator: nothing to forward (TorchRL calls this when keys are set)."""

    def _tokens(self, tensordict: TensorDictBase, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        tokens = tensordict.get(self.tensor_keys.tokens, None)
        if tokens is None:
            with torch.no_grad():
                return self.tokenizer(obs[:, :-1], actions[:, :-1], obs[:, 1:], update_codebook=False).tokens
        if tokens.shape[:2] == actions.shape:
            tokens = tokens[:, :-1]  # stored at step t for the transition t → t+1; the last one is unused
        return tokens

    def reward_targets(self, rewards: torch.Tensor) -> torch.Tensor:
        """Two-hot of symlog(r) ``[B, T, buckets]``, or sign classes ``[B, T]`` in {0, 1, 2}."""
        wm = self.world_model.config
        if wm.reward_head == "two_hot":
            return functional.two_hot(functional.symlog(rewards.float()), low=self.config.two_hot_low,
                                      high=self.config.two_hot_high, num_buckets=wm.num_reward_buckets)
        return (rewards.sign() + 1).long()

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        k, w = self.tensor_keys, self.config
        obs = pixels_to_float(tensordict.get(k.pixels))
        actions = tensordict.get(k.action)
        mask = _as_bt(tensordict.get(k.mask_padding), actions.shape, "mask_padding")
        rewards = _as_bt(tensordict.get(k.reward), actions.shape, "reward")
        ends = _as_bt(tensordict.get(k.terminated), actions.shape, "terminated").long()
        tokens = self._tokens(tensordict, obs, actions)  # [B, T-1, K]
        n_lat = tokens.size(-1)

        out = self.world_model(self.world_model.training_sequence(obs, actions, tokens))
        logits_latents = einops.rearrange(out.logits_latents, "b (t k) v -> b t k v", k=n_lat)[:, :-1]
        valid_latents = mask[:, :-1] & mask[:, 1:] if w.mask_latents_with_next_padding else mask[:, :-1]
        ce_latents = F.cross_entropy(einops.rearrange(logits_latents.float(), "b t k v -> b v t k"), tokens,
                                     reduction="none")  # [B, T-1, K]
        hits = (logits_latents.argmax(dim=-1) == tokens).float()
        ce_rewards = F.cross_entropy(einops.rearrange(out.logits_rewards.float(), "b t v -> b v t"),
                                     einops.rearrange(self.reward_targets(rewards), "b t ... -> b ... t"),
                                     reduction="none")  # [B, T]
        ce_ends = F.cross_entropy(einops.rearrange(out.logits_ends.float(), "b t v -> b v t"), ends,
                                  reduction="none")
        return TensorDict(
            loss_latents=w.latents_weight * masked_mean(ce_latents, valid_latents),
            loss_rewards=w.rewards_weight * masked_mean(ce_rewards, mask),
            loss_ends=w.ends_weight * masked_mean(ce_ends, mask),
            latent_accuracy=masked_mean(hits, valid_latents).detach(),
        )
