"""The Δ-IRIS world model: a causal transformer over blocks [e(o_t), a_t, z^1_{t+1}, ..., z^K_{t+1}].

Micheli et al., ICML 2024; reference delta-iris ``src/models/world_model.py`` and ``slicer.py``.
``e(o_t)`` is a continuous embedding of the whole frame (a small CNN, flattened, LayerNorm); actions
and tokens get learned embeddings. From the action position the model predicts the reward, the end
flag and z^1; from z^k it predicts z^{k+1}.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import einops
import torch
import torch.nn as nn
from einops.layers.torch import Rearrange

from torchrl_deltairis.modules.convnet import FrameCnnConfig, FrameEncoder
from torchrl_deltairis.modules.kv_cache import KVCache
from torchrl_deltairis.modules.transformer import Transformer, TransformerConfig, init_weights_

__all__ = ["WorldModelConfig", "WorldModel", "WorldModelOutput", "Head"]

_REWARD_HEADS = ("two_hot", "sign")


@dataclass
class WorldModelConfig:
    """Configuration of :class:`WorldModel`; defaults are the shipped Crafter config."""

    num_actions: int = 17
    latent_vocab_size: int = 1024
    """the tokenizer's codebook size"""
    image_channels: int = 3
    image_size: int = 64
    reward_head: Literal["two_hot", "sign"] = "two_hot"
    """'two_hot': 255-bin two-hot over symlog rewards (Crafter); 'sign': 3 classes sign(r)+1 (Atari)"""
    num_reward_buckets: int = 255
    """classes of the two-hot reward head"""
    num_end_classes: int = 2
    """classes of the end head (not ended / ended)"""
    transformer_config: TransformerConfig = field(default_factory=TransformerConfig)
    frame_cnn_config: FrameCnnConfig = field(default_factory=lambda: FrameCnnConfig(3, 8, 32))
    """frame embedding CNN; its flattened output (latent_dim · h · w) must equal embed_dim"""
    init_std: float = 0.02
    """std of the normal init of Linear / Embedding weights"""

    def __post_init__(self) -> None:
        if self.reward_head not in _REWARD_HEADS:
            raise ValueError(f"reward_head={self.reward_head!r}; valid choices are {list(_REWARD_HEADS)}")
        res = self.image_size // 2 ** self.frame_cnn_config.num_downsamplings
        flat = res * res * self.frame_cnn_config.latent_dim
        if flat != self.transformer_config.embed_dim:
            raise ValueError(f"frame CNN output {res}·{res}·{self.frame_cnn_config.latent_dim} = {flat} "
                             f"must equal embed_dim={self.transformer_config.embed_dim}")

    @property
    def num_reward_classes(self) -> int:
        return self.num_reward_buckets if self.reward_head == "two_hot" else 3

    @property
    def num_latent_tokens(self) -> int:
        return self.transformer_config.tokens_per_block - 2


class WorldModelOutput(NamedTuple):
    output_sequence: torch.Tensor
    """[B, N, E] transformer outputs"""
    logits_latents: torch.Tensor
    """[B, n_latent_positions, vocab] at the action and z^1..z^{K-1} positions"""
    logits_rewards: torch.Tensor
    """[B, n_action_positions, reward classes]"""
    logits_ends: torch.Tensor
    """[B, n_action_positions, 2]"""


class Head(nn.Module):
    """An MLP applied at the positions whose index within a block is flagged in ``block_mask``.

    ``indices`` (a buffer, as in the reference checkpoints) lists those positions for ``max_blocks``.
    ``phase_positions[r]`` (built once, not saved) lists them relative to an input that starts at a
    position ``r`` (mod the block size): each call slices one of them, and builds no tensor from a list
    (a blocking host→device copy on a GPU).
    """

    def __init__(self, max_blocks: int, block_mask: list[int], head_module: nn.Module) -> None:
        super().__init__()
        self.block_size = len(block_mask)
        self.kept = [i for i, m in enumerate(block_mask) if m]
        offsets = einops.repeat(torch.arange(max_blocks) * self.block_size, "m -> m k", k=len(self.kept))
        self.register_buffer("indices", (offsets + torch.tensor(self.kept)).flatten())
        self.max_steps = max_blocks * self.block_size
        phases = [self._relative(self.max_steps, r) for r in range(self.block_size)]
        self.register_buffer("phase_positions", torch.tensor(phases, dtype=torch.long), persistent=False)
        self.head_module = head_module

    def _relative(self, num_steps: int, prev_steps: int) -> list[int]:
        span = range(prev_steps, prev_steps + num_steps)
        return [p - prev_steps for p in span if p % self.block_size in self.kept]

    def positions(self, num_steps: int, prev_steps: int, device: torch.device) -> torch.Tensor:
        """Indices, relative to the input, of the flagged positions among ``prev_steps + [0, num_steps)``."""
        if prev_steps == 0 and num_steps % self.block_size == 0:
            return self.indices[: num_steps // self.block_size * len(self.kept)]
        if num_steps > self.max_steps:  # longer than any cache holds: built from a list, as it always was
            return torch.tensor(self._relative(num_steps, prev_steps), dtype=torch.long, device=device)
        phase = prev_steps % self.block_size
        full, rest = divmod(num_steps, self.block_size)
        count = full * len(self.kept) + sum((phase + j) % self.block_size in self.kept for j in range(rest))
        return self.phase_positions[phase, :count]  # the flagged positions of [0, num_steps) at this phase

    def forward(self, x: torch.Tensor, num_steps: int, prev_steps: int) -> torch.Tensor:
        return self.head_module(x[:, self.positions(num_steps, prev_steps, x.device)])


def _mlp_head(embed_dim: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, out))


class WorldModel(nn.Module):
    """Transformer world model over frame embeddings, actions and Δ-tokens."""

    def __init__(self, config: WorldModelConfig) -> None:
        super().__init__()
        self.config = config
        tc = config.transformer_config
        e, k = tc.embed_dim, tc.tokens_per_block
        self.transformer = Transformer(tc)
        self.frame_cnn = nn.Sequential(FrameEncoder(config.frame_cnn_config),
                                       Rearrange("... c h w -> ... 1 (h w c)"), nn.LayerNorm(e))
        self.act_emb = nn.Embedding(config.num_actions, e)
        self.latents_emb = nn.Embedding(config.latent_vocab_size, e)
        action_only = [int(i == 1) for i in range(k)]
        action_and_latents_but_last = [int(1 <= i < k - 1) for i in range(k)]
        self.head_latents = Head(tc.max_blocks, action_and_latents_but_last,
                                 _mlp_head(e, config.latent_vocab_size))
        self.head_rewards = Head(tc.max_blocks, action_only, _mlp_head(e, config.num_reward_classes))
        self.head_ends = Head(tc.max_blocks, action_only, _mlp_head(e, config.num_end_classes))
        init_weights_(self, std=config.init_std)

    def embed_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames ``[B, T, C, H, W]`` in [0, 1] → frame tokens ``[B, T, 1, E]``."""
        assert frames.ndim == 5, f"expected frames [B, T, C, H, W], got {tuple(frames.shape)}"
        return self.frame_cnn(frames)

    def training_sequence(self, frames: torch.Tensor, actions: torch.Tensor,
                          tokens: torch.Tensor) -> torch.Tensor:
        """The teacher-forced input ``[B, T·(K+2), E]`` of T full blocks.

        ``tokens`` ``[B, T-1, K]`` are those of transitions t → t+1; the last block, which has no next
        frame, gets dummy token 0 (its predictions are not used).
        """
        b, t = actions.shape
        k = self.config.num_latent_tokens
        assert frames.shape[:2] == (b, t) and tokens.shape == (b, t - 1, k), (
            f"expected frames [B, T, ...], tokens [B, T-1, {k}] for actions {(b, t)}, got "
            f"{tuple(frames.shape)}, {tuple(tokens.shape)}")
        frames_emb = self.embed_frames(frames)  # [B, T, 1, E]
        act_emb = self.act_emb(einops.rearrange(actions, "b t -> b t 1"))  # [B, T, 1, E]
        lat_emb = self.latents_emb(torch.cat((tokens, tokens.new_zeros(b, 1, k)), dim=1))  # [B, T, K, E]
        blocks = torch.cat((frames_emb, act_emb.to(frames_emb.dtype), lat_emb.to(frames_emb.dtype)), dim=2)
        return einops.rearrange(blocks, "b t p e -> b (t p) e")

    def burn_in_sequence(self, frames: torch.Tensor, actions: torch.Tensor,
                         tokens: torch.Tensor) -> torch.Tensor:
        """The imagination context ``[B, L·(K+2)+1, E]``.

        ``[e(o_0), a_0, z_1, ..., e(o_{L-1}), a_{L-1}, z_L, e(o_L)]`` from frames ``[B, L+1]``, actions
        ``[B, L]`` and tokens ``[B, L, K]``.
        """
        b, n = actions.shape
        assert frames.shape[:2] == (b, n + 1) and tokens.shape[:2] == (b, n), (
            f"expected frames [B, L+1], tokens [B, L] for actions {(b, n)}, "
            f"got {tuple(frames.shape)}, {tuple(tokens.shape)}")
        frames_emb = self.embed_frames(frames)
        act_emb = self.act_emb(einops.rearrange(actions, "b t -> b t 1")).to(frames_emb.dtype)
        lat_emb = self.latents_emb(tokens).to(frames_emb.dtype)
        blocks = torch.cat((frames_emb[:, :-1], act_emb, lat_emb), dim=2)
        return torch.cat((einops.rearrange(blocks, "b t p e -> b (t p) e"), frames_emb[:, -1]), dim=1)

    def forward(self, sequence: torch.Tensor, kv_cache: KVCache | None = None) -> WorldModelOutput:
        """Runs the transformer and the three heads over ``sequence`` ``[B, N, E]``.

        With ``kv_cache`` the sequence continues the cached one (head positions account for it).
        """
        prev_steps = 0 if kv_cache is None else kv_cache.size
        if prev_steps is None:
            raise ValueError("WorldModel.forward needs a KVCache with its host-side size (not a KVCache.view): "
                             "the heads' positions depend on it")
        n = sequence.size(1)
        out = self.transformer(sequence, kv_cache)
        return WorldModelOutput(out, self.head_latents(out, n, prev_steps),
                                self.head_rewards(out, n, prev_steps), self.head_ends(out, n, prev_steps))
