"""An explicit, preallocated key/value cache for the world model's transformer.

The reference (delta-iris ``src/models/kv_caching.py``) keeps growing caches inside the transformer
module. Here the cache is a plain object owned by the caller (the imagination env) and passed to
``Transformer.forward``: its tensors have static shapes ``[num_layers, B, max_tokens, E]``, the write
position is a device tensor, and attention always runs over all ``max_tokens`` slots with a mask, so
one decoding step has fixed shapes (a prerequisite for CUDA-graph capture). :meth:`KVCache.view` wraps the
same three tensors without the host-side length, for a compiled step (``ImaginationCore``): nothing in
it then reads or branches on a Python int that changes from step to step.

It is meant for inference (imagination runs the world model under ``torch.no_grad``).
"""

from __future__ import annotations

import torch

__all__ = ["KVCache"]


class KVCache:
    """Keys and values of every layer for ``batch_size`` sequences of up to ``max_tokens`` tokens.

    Args:
        num_layers, batch_size, max_tokens, embed_dim: the static shape.
        device, dtype: where the cache lives (take them from the model's parameters or the data).

    ``length`` (int64 0-dim tensor on ``device``) is the number of tokens written; ``size`` is its
    host-side mirror, kept for bounds checks and slicing without a device sync (None on a :meth:`view`).
    """

    def __init__(self, *, num_layers: int, batch_size: int, max_tokens: int, embed_dim: int,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> None:
        shape = (num_layers, batch_size, max_tokens, embed_dim)
        # Zeros, not empty: unused slots are masked out of attention but must stay finite (0 · NaN = NaN).
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.length = torch.zeros((), dtype=torch.long, device=device)
        self.size: int | None = 0

    @classmethod
    def view(cls, keys: torch.Tensor, values: torch.Tensor, length: torch.Tensor) -> "KVCache":
        """A cache over existing tensors (written in place) with no host-side mirror: ``size`` is None, so
        :meth:`positions` checks no bounds (the owner of the tensors does) and nothing specializes a
        compiled graph on how many tokens are cached."""
        cache = cls.__new__(cls)
        cache.keys, cache.values, cache.length, cache.size = keys, values, length, None
        return cache

    @property
    def num_layers(self) -> int:
        return self.keys.size(0)

    @property
    def batch_size(self) -> int:
        return self.keys.size(1)

    @property
    def max_tokens(self) -> int:
        return self.keys.size(2)

    @property
    def embed_dim(self) -> int:
        return self.keys.size(3)

    @property
    def device(self) -> torch.device:
        return self.keys.device

    def reset(self) -> None:
        """Empties the cache in place (the tensors are kept; stale slots are masked)."""
        self.length.zero_()
        self.size = 0

    def positions(self, num_new: int) -> torch.Tensor:
        """Absolute positions ``[num_new]`` of the next ``num_new`` tokens."""
        if self.size is not None and self.size + num_new > self.max_tokens:
            raise ValueError(f"KV cache overflow: {self.size} tokens cached + {num_new} new > "
                             f"max_tokens={self.max_tokens}")
        return self.length + torch.arange(num_new, device=self.length.device)

    def write(self, layer: int, positions: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Stores ``keys``/``values`` ``[B, T, E]`` of ``layer`` at ``positions`` ``[T]``."""
        expected = (self.batch_size, positions.size(0), self.embed_dim)
        assert keys.shape == values.shape == expected, (
            f"expected keys/values {expected}, got {tuple(keys.shape)} / {tuple(values.shape)}")
        self.keys[layer].index_copy_(1, positions, keys.to(self.keys.dtype))
        self.values[layer].index_copy_(1, positions, values.to(self.values.dtype))

    def advance(self, num_new: int) -> None:
        """Marks ``num_new`` more tokens as written (called once per forward, after all layers)."""
        self.length += num_new
        if self.size is not None:
            self.size += num_new
