"""Optimizers and one gradient update, as the reference trains each component (its ``src/trainer.py``).

The tokenizer and the world model use AdamW with weight decay on the weights of ``nn.Linear`` (and
``nn.Conv1d``) layers only (minGPT's rule: convolution-2d, embedding and normalisation weights and
every bias get none); the actor-critic uses plain Adam. Constant learning rate, default betas and eps.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
import torch.nn as nn

DECAYED_MODULES = (nn.Linear, nn.Conv1d)


def decay_groups(module: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(parameters with weight decay, parameters without), each trainable parameter exactly once."""
    decay_ids = {id(m.weight) for m in module.modules() if isinstance(m, DECAYED_MODULES)}
    params = [p for p in module.parameters() if p.requires_grad]
    return [p for p in params if id(p) in decay_ids], [p for p in params if id(p) not in decay_ids]


def make_optimizer(module: nn.Module, *, lr: float, weight_decay: float = 0.0,
                   kind: Literal["adamw", "adam"] = "adamw") -> torch.optim.Optimizer:
    """``adamw``: decay on Linear / Conv1d weights only (tokenizer, world model); ``adam``: plain
    Adam (the actor-critic)."""
    if kind == "adam":
        return torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=lr)
    if kind != "adamw":
        raise ValueError(f"optimizer kind {kind!r}; valid choices are ['adam', 'adamw']")
    decay, no_decay = decay_groups(module)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)


def apply_gradients(optimizer: torch.optim.Optimizer, params: Iterable[nn.Parameter], max_grad_norm: float) -> bool:
    """Clips the gradients to ``max_grad_norm`` and steps, unless they are not finite (a NaN / inf
    loss): then the step is skipped so that it never reaches the weights or a checkpoint. Returns
    whether the step was applied (one host sync per update, not per loss term)."""
    norm = torch.nn.utils.clip_grad_norm_(list(params), max_grad_norm)
    applied = bool(torch.isfinite(norm))
    if applied:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return applied
