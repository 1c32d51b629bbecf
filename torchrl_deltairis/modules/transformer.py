"""GPT-style transformer of the Δ-IRIS world model (minGPT layout, pre-LayerNorm).

Reference: delta-iris ``src/models/transformer.py``. Learned absolute positions, ``num_layers`` ×
[x += Attn(LN(x)); x += MLP(LN(x))], a final LayerNorm. Attention can read and extend an explicit
:class:`~torchrl_deltairis.modules.kv_cache.KVCache` passed by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import einops
import torch
import torch.nn as nn
import torch.nn.functional as F

from torchrl_deltairis.modules.kv_cache import KVCache
from torchrl_deltairis.checked import setting

__all__ = ["TransformerConfig", "Transformer", "init_weights_"]

_ATTENTIONS = ("causal", "block_causal")


def init_weights_(module: nn.Module, *, std: float = 0.02) -> nn.Module:
    """minGPT init, in place: Linear/Embedding weights N(0, std), Linear biases 0, LayerNorm 1 / 0.

    Convolutions keep PyTorch's default init (as in the reference).
    """
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return module


@dataclass
class TransformerConfig:
    """Configuration of :class:`Transformer`; defaults are the shipped Crafter config."""

    tokens_per_block: int = 6
    """tokens per time step: [frame, action, z1..z4]"""
    max_blocks: int = 21
    """time steps that fit in the context (max_tokens = tokens_per_block · max_blocks)"""
    num_layers: int = 3
    num_heads: int = 8
    embed_dim: int = 512
    attention: Literal["causal", "block_causal"] = "causal"
    """token-causal, or causal across blocks with full attention inside a block"""
    embed_pdrop: float = setting(0.0, doc="dropout of the embeddings", low=0, high=1, high_open=True)
    resid_pdrop: float = setting(0.0, doc="dropout of the residual branches", low=0, high=1, high_open=True)
    attn_pdrop: float = setting(0.0, doc="dropout of the attention weights", low=0, high=1, high_open=True)
    mlp_ratio: int = 4
    """hidden width of the MLP, in units of embed_dim"""

    def __post_init__(self) -> None:
        if self.attention not in _ATTENTIONS:
            raise ValueError(f"attention={self.attention!r}; valid choices are {list(_ATTENTIONS)}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}")

    @property
    def max_tokens(self) -> int:
        return self.tokens_per_block * self.max_blocks


def attention_mask(config: TransformerConfig) -> torch.Tensor:
    """Bool ``[max_tokens, max_tokens]``, True where a query (row) may attend to a key (column)."""
    n, k = config.max_tokens, config.tokens_per_block
    mask = torch.ones(n, n).tril().bool()
    if config.attention == "block_causal":
        block = torch.arange(n) // k
        mask = mask | (block.unsqueeze(1) == block.unsqueeze(0))
    return mask


class Attention(nn.Module):
    """Multi-head scaled dot-product attention followed by the output projection."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.attn_pdrop = config.attn_pdrop
        self.proj = nn.Linear(config.embed_dim, config.embed_dim)
        self.resid_drop = nn.Dropout(config.resid_pdrop)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        assert mask.shape == (q.size(1), k.size(1)), (
            f"mask {tuple(mask.shape)} does not match queries {q.size(1)} / keys {k.size(1)}")
        q, k, v = (einops.rearrange(x, "b n (h d) -> b h n d", h=self.num_heads) for x in (q, k, v))
        dropout = self.attn_pdrop if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        return self.resid_drop(self.proj(einops.rearrange(y, "b h n d -> b n (h d)")))


class SelfAttentionLayer(nn.Module):
    """``x + Attn(LN(x))``, reading and extending the layer's slot of a KV cache when one is given."""

    def __init__(self, config: TransformerConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.register_buffer("mask", attention_mask(config))
        self.ln = nn.LayerNorm(config.embed_dim)
        self.query = nn.Linear(config.embed_dim, config.embed_dim)
        self.key = nn.Linear(config.embed_dim, config.embed_dim)
        self.value = nn.Linear(config.embed_dim, config.embed_dim)
        self.attention = Attention(config)

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        h = self.ln(x)
        q, k, v = self.query(h), self.key(h), self.value(h)
        if kv_cache is None:
            n = x.size(1)
            return x + self.attention(q, k, v, self.mask[:n, :n])
        kv_cache.write(self.layer, positions, k, v)
        keys, values = kv_cache.keys[self.layer].to(q.dtype), kv_cache.values[self.layer].to(q.dtype)
        # Rows of the causal mask at the query positions, over every cache slot: slots not yet
        # written lie after the queries and are masked.
        return x + self.attention(q, keys, values, self.mask.index_select(0, positions))


class MLPLayer(nn.Module):
    """``x + MLP(LN(x))`` with a GELU MLP of width ``mlp_ratio · embed_dim``."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        e = config.embed_dim
        self.ln = nn.LayerNorm(e)
        self.mlp = nn.Sequential(nn.Linear(e, config.mlp_ratio * e), nn.GELU(),
                                 nn.Linear(config.mlp_ratio * e, e), nn.Dropout(config.resid_pdrop))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.ln(x))


class EncoderLayer(nn.Module):
    def __init__(self, config: TransformerConfig, layer: int) -> None:
        super().__init__()
        self.sa = SelfAttentionLayer(config, layer)
        self.mlp = MLPLayer(config)

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        return self.mlp(self.sa(x, kv_cache, positions))


class Transformer(nn.Module):
    """Embedded tokens ``[B, N, E]`` → outputs ``[B, N, E]``.

    Without a cache the N tokens sit at positions 0..N-1. With ``kv_cache`` they continue the cached
    sequence: their keys and values are written into it and it advances by N.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.pos_emb = nn.Embedding(config.max_tokens, config.embed_dim)
        self.emb_drop = nn.Dropout(config.embed_pdrop)
        self.blocks = nn.ModuleList(EncoderLayer(config, i) for i in range(config.num_layers))
        self.ln = nn.LayerNorm(config.embed_dim)

    def make_kv_cache(self, batch_size: int, *, device: torch.device | str | None = None,
                      dtype: torch.dtype = torch.float32) -> KVCache:
        """An empty cache sized for this transformer (device defaults to the parameters')."""
        device = self.pos_emb.weight.device if device is None else device
        c = self.config
        return KVCache(num_layers=c.num_layers, batch_size=batch_size, max_tokens=c.max_tokens,
                       embed_dim=c.embed_dim, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        c = self.config
        assert x.ndim == 3 and x.size(2) == c.embed_dim, (
            f"expected [B, N, {c.embed_dim}], got {tuple(x.shape)}")
        n = x.size(1)
        if kv_cache is None:
            assert n <= c.max_tokens, f"{n} tokens exceed max_tokens={c.max_tokens}"
            positions = torch.arange(n, device=x.device)
        else:
            got = (kv_cache.num_layers, kv_cache.max_tokens, kv_cache.batch_size)
            expected = (c.num_layers, c.max_tokens, x.size(0))
            assert got == expected, f"cache (layers, max_tokens, batch) = {got}, expected {expected}"

            positions = kv_cache.positions(n)
        if n == 0:
            return self.ln(x)
        y = self.emb_drop(x + self.pos_emb(positions))
        for block in self.blocks:
            y = block(y, kv_cache, positions if kv_cache is not None else None)
        if kv_cache is not None:
            kv_cache.advance(n)
        return self.ln(y)
