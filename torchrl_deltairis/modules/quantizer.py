"""Cosine vector quantizer with an EMA codebook and dead-code revival (Δ-IRIS tokenizer).

Reference: delta-iris ``src/models/tokenizer/quantizer.py``. The codebook is a buffer, moved only by
exponential moving averages; the encoder gets a straight-through gradient and a commitment loss.
The update below has static shapes and never syncs with the host (no ``.item()``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import einops
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["QuantizerConfig", "Quantizer", "QuantizerOutput"]


@dataclass
class QuantizerConfig:
    """Configuration of :class:`Quantizer` (every constant the reference hard-codes, with its value)."""

    codebook_size: int = 1024
    """number of codewords C (a power of two)"""
    codebook_dim: int = 64
    """dimension of a codeword"""
    input_dim: int = 1024
    """dimension of an encoder patch (latent_dim · token_res²)"""
    max_codebook_updates_with_revival: int | None = 0
    """revival allowed while fewer updates than this were made (None: always); it is also allowed
    whenever the entropy is below ``always_revive_below_bits``"""
    codebook_ema_decay: float = 0.99
    """codebook ← lerp(codebook, batch mean, 1 - decay)"""
    freqs_ema_decay: float = 0.98
    """codeword frequencies ← lerp(freqs, batch frequencies, 1 - decay)"""
    revival_entropy_margin_bits: float = 2.0
    """revive when the usage entropy is below log2(C) - margin bits"""
    always_revive_below_bits: float = 1.0
    """below this entropy, revival is allowed even past ``max_codebook_updates_with_revival``"""
    expired_freq_factor: float = 10.0
    """a codeword is expired when its frequency is below 1 / (factor · C)"""

    def __post_init__(self) -> None:
        if not math.log2(self.codebook_size).is_integer():
            raise ValueError(f"codebook_size must be a power of two, got {self.codebook_size}")


class QuantizerOutput(NamedTuple):
    q: torch.Tensor
    """[B, T, K, input_dim] straight-through codewords after ``post_quant_proj``"""
    tokens: torch.Tensor
    """[B, T, K] int64 codeword ids"""
    commitment: torch.Tensor
    """scalar, unweighted mean((z - sg(q))²)"""
    codebook_entropy: torch.Tensor
    """scalar (detached), entropy in bits of the codeword frequencies after the update"""
    codewords_revived: torch.Tensor
    """scalar int64 (detached), codewords revived by this call (0 without an update)"""


class Quantizer(nn.Module):
    """Nearest codeword by cosine similarity, straight-through, EMA codebook, dead-code revival."""

    def __init__(self, config: QuantizerConfig) -> None:
        super().__init__()
        self.config = config
        c, d = config.codebook_size, config.codebook_dim
        self.pre_quant_proj = nn.Linear(config.input_dim, d)
        self.post_quant_proj = nn.Linear(d, config.input_dim)
        self.register_buffer("num_codebook_updates", torch.tensor(0))
        self.register_buffer("codebook", torch.empty(c, d).uniform_(-1.0 / c, 1.0 / c))
        self.register_buffer("codewords_freqs", torch.full((c,), 1.0 / c))

    def forward(self, z: torch.Tensor, update_codebook: bool | None = None) -> QuantizerOutput:
        """Quantizes patches ``z`` ``[B, T, K, input_dim]``.

        ``update_codebook`` defaults to ``self.training``; pass False to tokenize in training mode
        without touching the codebook (e.g. inside the world-model loss).
        """
        assert z.ndim == 4 and z.size(-1) == self.config.input_dim, (
            f"expected z [B, T, K, {self.config.input_dim}], got {tuple(z.shape)}")
        b, t, k, _ = z.shape
        z = F.normalize(self.pre_quant_proj(z), dim=-1)
        z = einops.rearrange(z, "b t k e -> (b t k) e")
        tokens = torch.einsum("ne,ce->nc", z, self.codebook.to(z.dtype)).argmax(dim=-1)  # [N]
        q = self.codebook[tokens].to(z.dtype)
        commitment = (z - q.detach()).pow(2).mean()
        if self.training if update_codebook is None else update_codebook:
            revived = self._update_codebook(z.detach().float(), tokens)
        else:
            revived = tokens.new_zeros(())
        q = z + (q - z).detach()  # straight-through estimator
        q = einops.rearrange(self.post_quant_proj(q), "(b t k) e -> b t k e", b=b, t=t, k=k)
        tokens = einops.rearrange(tokens, "(b t k) -> b t k", b=b, t=t, k=k)
        return QuantizerOutput(q, tokens, commitment, self.codebook_entropy().detach(), revived)

    def codebook_entropy(self) -> torch.Tensor:
        """Entropy (bits) of the EMA codeword frequencies."""
        p = self.codewords_freqs
        return -torch.where(p > 0, p * torch.log2(p.clamp_min(1e-30)), torch.zeros_like(p)).sum()

    @torch.no_grad()
    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Codeword ids ``[...]`` → ``post_quant_proj(codebook[ids])`` ``[..., input_dim]``."""
        return self.post_quant_proj(self.codebook[tokens])

    @torch.no_grad()
    def _update_codebook(self, z: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        c = cfg.codebook_size
        one_hot = F.one_hot(tokens, c).to(z.dtype)  # [N, C]
        counts = one_hot.sum(dim=0)  # [C]
        means = torch.einsum("ne,nc->ce", z, one_hot) / counts.clamp(min=1).unsqueeze(-1)
        self.codebook.lerp_(F.normalize(means, dim=-1), 1 - cfg.codebook_ema_decay)
        self.codewords_freqs.lerp_(counts / z.size(0), 1 - cfg.freqs_ema_decay)

        entropy = self.codebook_entropy()
        can_revive = entropy < cfg.always_revive_below_bits
        if cfg.max_codebook_updates_with_revival is None:
            can_revive = torch.ones_like(can_revive)
        else:
            can_revive = can_revive | (self.num_codebook_updates < cfg.max_codebook_updates_with_revival)
        revive = can_revive & (entropy < math.log2(c) - cfg.revival_entropy_margin_bits)
        expired = revive & (self.codewords_freqs < 1.0 / (cfg.expired_freq_factor * c))  # [C]
        # A random subset of at most N expired codewords takes N distinct random batch vectors:
        # rank the expired codes in random order, code of rank r gets z[perm[r]] (static shapes).
        n = z.size(0)
        keys = torch.where(expired, torch.rand(c, device=z.device), torch.full_like(counts, 2.0))
        rank = torch.empty(c, dtype=torch.long, device=z.device)
        rank[keys.argsort()] = torch.arange(c, device=z.device)
        revived = expired & (rank < n)
        donors = z[torch.randperm(n, device=z.device)[rank.clamp(max=n - 1)]]  # [C, E]
        self.codebook.copy_(torch.where(revived.unsqueeze(-1), donors, self.codebook))
        fresh = torch.full_like(counts, 1.0 / c)
        self.codewords_freqs.copy_(torch.where(revived, fresh, self.codewords_freqs))

        self.codebook.copy_(F.normalize(self.codebook, dim=-1))
        self.num_codebook_updates += 1
        return revived.sum()
