"""The Δ-tokenizer: a conditional VQ autoencoder of frame o_{t+1} given (o_t, a_t).

Micheli et al., "Efficient World Models with Context-Aware Tokenization", ICML 2024; reference
delta-iris ``src/models/tokenizer/tokenizer.py``. The encoder sees (o_t, an action plane, o_{t+1}); its
8×8 latent map is cut into a 2×2 grid of patches, each quantized to one of ``codebook_size`` codes
(4 tokens per transition). The decoder rebuilds o_{t+1} from a CNN view of o_t, an action map and the
quantized patches, so the tokens only carry what o_t and a_t do not predict.

Frames are float tensors in [0, 1], shape ``[B, T, 3, H, W]``; actions int64 ``[B, T]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import einops
import torch
import torch.nn as nn

from torchrl_deltairis.modules.convnet import FrameCnnConfig, FrameDecoder, FrameEncoder
from torchrl_deltairis.modules.quantizer import Quantizer, QuantizerConfig, QuantizerOutput
from torchrl_deltairis.modules.transformer import init_weights_
from torchrl_deltairis.checked import setting

__all__ = ["TokenizerConfig", "Tokenizer"]


@dataclass
class TokenizerConfig:
    """Configuration of :class:`Tokenizer`; defaults are the shipped Crafter config."""

    num_actions: int = 17
    """size of the discrete action space"""
    image_channels: int = 3
    image_size: int = 64
    num_tokens: int = 4
    """tokens per frame, a perfect square (2×2 grid of latent patches)"""
    decoder_act_channels: int = 4
    """channels of the decoder's learned action map (at latent resolution)"""
    codebook_size: int = 1024
    codebook_dim: int = 64
    max_codebook_updates_with_revival: int | None = 0
    """see :class:`QuantizerConfig` (Crafter 0, Atari 400)"""
    encoder_config: FrameCnnConfig = field(default_factory=lambda: FrameCnnConfig(7, 64, 64))
    """encoder of cat(o_t, action plane, o_{t+1}); image_channels = 2·3 + 1"""
    decoder_config: FrameCnnConfig = field(default_factory=lambda: FrameCnnConfig(3, 76, 64))
    """decoder; latent_dim = frame_cnn latent + decoder_act_channels + encoder latent"""
    frame_cnn_config: FrameCnnConfig = field(default_factory=lambda: FrameCnnConfig(3, 8, 64))
    """the decoder's own encoder of o_t"""
    codebook_ema_decay: float = setting(0.99, doc="the quantizer's EMA rate of the codebook", low=0, high=1,
                                        high_open=True)
    freqs_ema_decay: float = setting(0.98, doc="the quantizer's EMA rate of the code frequencies", low=0, high=1,
                                     high_open=True)
    revival_entropy_margin_bits: float = 2.0
    always_revive_below_bits: float = 1.0
    expired_freq_factor: float = 10.0
    init_std: float = 0.02
    """std of the normal init of Linear / Embedding weights (biases 0, LayerNorm 1/0)"""

    def __post_init__(self) -> None:
        grid = math.isqrt(self.num_tokens)
        if grid * grid != self.num_tokens or self.latent_res % grid:
            raise ValueError(f"num_tokens={self.num_tokens} must be a square whose root divides the "
                             f"latent resolution {self.latent_res}")
        expected = (self.frame_cnn_config.latent_dim + self.decoder_act_channels
                    + self.encoder_config.latent_dim)
        if self.decoder_config.latent_dim != expected:
            raise ValueError(f"decoder_config.latent_dim={self.decoder_config.latent_dim}, expected "
                             f"frame_cnn latent + decoder_act_channels + encoder latent = {expected}")
        if self.encoder_config.image_channels != 2 * self.image_channels + 1:
            raise ValueError(f"encoder_config.image_channels={self.encoder_config.image_channels}, "
                             f"expected {2 * self.image_channels + 1}")

    @property
    def latent_res(self) -> int:
        return self.image_size // 2 ** self.encoder_config.num_downsamplings

    @property
    def tokens_grid_res(self) -> int:
        return math.isqrt(self.num_tokens)

    @property
    def token_res(self) -> int:
        return self.latent_res // self.tokens_grid_res

    def quantizer_config(self) -> QuantizerConfig:
        return QuantizerConfig(
            codebook_size=self.codebook_size, codebook_dim=self.codebook_dim,
            input_dim=self.encoder_config.latent_dim * self.token_res ** 2,
            max_codebook_updates_with_revival=self.max_codebook_updates_with_revival,
            codebook_ema_decay=self.codebook_ema_decay, freqs_ema_decay=self.freqs_ema_decay,
            revival_entropy_margin_bits=self.revival_entropy_margin_bits,
            always_revive_below_bits=self.always_revive_below_bits,
            expired_freq_factor=self.expired_freq_factor)


class Tokenizer(nn.Module):
    """Δ-tokenizer: ``forward(x1, a, x2)`` quantizes the transition, ``decode`` rebuilds ``x2``."""

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.encoder_act_emb = nn.Embedding(c.num_actions, c.image_size ** 2)
        self.decoder_act_emb = nn.Embedding(c.num_actions, c.decoder_act_channels * c.latent_res ** 2)
        self.quantizer = Quantizer(c.quantizer_config())
        self.encoder = FrameEncoder(c.encoder_config)
        self.decoder = FrameDecoder(c.decoder_config)
        self.frame_cnn = FrameEncoder(c.frame_cnn_config)
        init_weights_(self, std=c.init_std)

    def _check(self, x1: torch.Tensor, a: torch.Tensor) -> None:
        s, ch = self.config.image_size, self.config.image_channels
        assert x1.ndim == 5 and x1.shape[2:] == (ch, s, s), (
            f"expected x1 [B, T, {ch}, {s}, {s}], got {tuple(x1.shape)}")
        assert a.shape == x1.shape[:2], f"expected actions {tuple(x1.shape[:2])}, got {tuple(a.shape)}"

    def encode(self, x1: torch.Tensor, a: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """(o_t, a_t, o_{t+1}) ``[B, T, 3, H, W]`` → latent map ``[B, T, latent_dim, h, w]``."""
        self._check(x1, a)
        assert x2.shape == x1.shape, f"x1 and x2 must match, got {tuple(x1.shape)} and {tuple(x2.shape)}"
        a_plane = einops.rearrange(self.encoder_act_emb(a), "b t (h w) -> b t 1 h w", h=x1.size(-2))
        return self.encoder(torch.cat((x1, a_plane.to(x1.dtype), x2), dim=2))

    def patches(self, z: torch.Tensor) -> torch.Tensor:
        """Latent map ``[B, T, C, h, w]`` → token patches ``[B, T, K, (k l C)]``."""
        g = self.config.tokens_grid_res
        return einops.rearrange(z, "b t c (gh k) (gw l) -> b t (gh gw) (k l c)", gh=g, gw=g)

    def unpatch(self, q: torch.Tensor) -> torch.Tensor:
        """Token vectors ``[B, T, K, (k l C)]`` → latent map ``[B, T, C, h, w]``."""
        g, r = self.config.tokens_grid_res, self.config.token_res
        return einops.rearrange(q, "b t (gh gw) (k l c) -> b t c (gh k) (gw l)", gh=g, gw=g, k=r, l=r)

    def forward(self, x1: torch.Tensor, a: torch.Tensor, x2: torch.Tensor,
                update_codebook: bool | None = None) -> QuantizerOutput:
        """Tokens of the transitions (o_t, a_t, o_{t+1}); see :class:`QuantizerOutput`."""
        return self.quantizer(self.patches(self.encode(x1, a, x2)), update_codebook=update_codebook)

    def decode(self, x1: torch.Tensor, a: torch.Tensor, q: torch.Tensor,
               should_clamp: bool = False) -> torch.Tensor:
        """Rebuilds o_{t+1} ``[B, T, 3, H, W]`` from o_t, a_t and token vectors ``q`` ``[B, T, K, D]``.

        With ``should_clamp`` the frame is clamped to [0, 1] and rounded to 1/255 steps.
        """
        self._check(x1, a)
        assert q.shape[:3] == (*x1.shape[:2], self.config.num_tokens), (
            f"expected q [B, T, {self.config.num_tokens}, D] with B, T = {tuple(x1.shape[:2])}, "
            f"got {tuple(q.shape)}")
        x1_emb = self.frame_cnn(x1)
        a_map = einops.rearrange(self.decoder_act_emb(a), "b t (c h w) -> b t c h w",
                                 c=self.config.decoder_act_channels, h=x1_emb.size(-2))
        r = self.decoder(torch.cat((x1_emb, a_map.to(x1_emb.dtype), self.unpatch(q).to(x1_emb.dtype)), dim=2))
        if should_clamp:
            r = r.clamp(0, 1).mul(255).round().div(255)
        return r

    @torch.no_grad()
    def encode_decode(self, x1: torch.Tensor, a: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """o_{t+1} rebuilt through its own tokens (teacher forcing), clamped and rounded."""
        q = self.quantizer(self.patches(self.encode(x1, a, x2)), update_codebook=False).q
        return self.decode(x1, a, q, should_clamp=True)

    @torch.no_grad()
    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids ``[B, T, K]`` → token vectors ``[B, T, K, D]`` for :meth:`decode`."""
        return self.quantizer.embed_tokens(tokens)

    @torch.no_grad()
    def burn_in(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Tokens ``[B, L, K]`` of the L transitions of ``obs`` ``[B, L+1, ...]`` and ``act`` ``[B, L]``."""
        assert obs.size(1) == act.size(1) + 1, (
            f"obs {tuple(obs.shape)} needs one more step than act {tuple(act.shape)}")
        return self(obs[:, :-1], act, obs[:, 1:], update_codebook=False).tokens
