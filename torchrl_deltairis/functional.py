"""Pure tensor math of Δ-IRIS: symlog / symexp, two-hot encodings, λ-returns and masks.

Every function takes keyword arguments (after its main tensor), returns new tensors and never
mutates its inputs. None of them stores or picks a device: results live where the inputs live.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "symlog",
    "symexp",
    "two_hot_buckets",
    "two_hot",
    "two_hot_inverse",
    "two_hot_expectation",
    "lambda_returns",
    "mask_after_first_done",
]

# Defaults of the reference (delta-iris src/utils.py): 255 buckets evenly spaced on [-20, 20] in
# symlog space, as in DreamerV3.
TWO_HOT_LOW = -20.0
TWO_HOT_HIGH = 20.0
TWO_HOT_NUM_BUCKETS = 255


def symlog(x: torch.Tensor) -> torch.Tensor:
    """sign(x) * log(1 + |x|), which compresses large magnitudes (DreamerV3)."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`symlog`: sign(x) * (exp(|x|) - 1)."""
    return torch.sign(x) * torch.expm1(torch.abs(x))


def two_hot_buckets(
    *,
    low: float = TWO_HOT_LOW,
    high: float = TWO_HOT_HIGH,
    num_buckets: int = TWO_HOT_NUM_BUCKETS,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The bucket centres, ``linspace(low, high, num_buckets)``."""
    return torch.linspace(low, high, num_buckets, device=device, dtype=dtype)


def two_hot(
    x: torch.Tensor,
    *,
    low: float = TWO_HOT_LOW,
    high: float = TWO_HOT_HIGH,
    num_buckets: int = TWO_HOT_NUM_BUCKETS,
) -> torch.Tensor:
    """Two-hot encoding of ``x`` (already in bucket space, e.g. ``symlog(r)``) → ``[*x.shape, num_buckets]``.

    Values are clamped to ``[low, high - 1e-5]`` (as the reference does) on a copy. The weights of the
    two neighbouring buckets are linear in the distance, so ``two_hot_inverse(two_hot(x)) == x`` inside
    the range. Unlike the reference, ``x == low`` maps to bucket 0 instead of wrapping to the last one.
    """
    if num_buckets < 2:
        raise ValueError(f"two_hot needs num_buckets >= 2, got {num_buckets}")
    x = x.clamp(low, high - 1e-5)
    buckets = two_hot_buckets(low=low, high=high, num_buckets=num_buckets, device=x.device, dtype=x.dtype)
    k = (torch.searchsorted(buckets, x.contiguous()) - 1).clamp(0, num_buckets - 2)  # left neighbour
    left, right = buckets[k], buckets[k + 1]
    weights = torch.stack((right - x, x - left), dim=-1) / (right - left).unsqueeze(-1)
    index = torch.stack((k, k + 1), dim=-1)
    return torch.scatter(x.new_zeros(*x.shape, num_buckets), dim=-1, index=index, src=weights)


def two_hot_inverse(
    probs: torch.Tensor,
    *,
    low: float = TWO_HOT_LOW,
    high: float = TWO_HOT_HIGH,
) -> torch.Tensor:
    """Expected bucket value of a distribution over buckets ``[..., num_buckets]`` → ``[...]``.

    The inverse of :func:`two_hot` (in bucket space; apply :func:`symexp` to get back to rewards).
    """
    buckets = two_hot_buckets(low=low, high=high, num_buckets=probs.size(-1), device=probs.device,
                              dtype=probs.dtype)
    return probs @ buckets


def two_hot_expectation(
    logits: torch.Tensor,
    *,
    low: float = TWO_HOT_LOW,
    high: float = TWO_HOT_HIGH,
) -> torch.Tensor:
    """``symexp(E_softmax(logits)[bucket])``: the scalar a two-hot head predicts (reward or value)."""
    return symexp(two_hot_inverse(F.softmax(logits, dim=-1), low=low, high=high))


def lambda_returns(
    *,
    rewards: torch.Tensor,
    values: torch.Tensor,
    ends: torch.Tensor,
    value_bootstrap: torch.Tensor,
    gamma: float,
    lambda_: float,
) -> torch.Tensor:
    """λ-returns ``G_t = r_t + γ(1 - d_t)[(1 - λ) V_{t+1} + λ G_{t+1}]`` with ``G_T = V_T = value_bootstrap``.

    Args:
        rewards, values, ends: ``[B, T]``; ``values[:, t]`` is V(s_t), ``ends`` is 1/True at a terminal step.
        value_bootstrap: ``[B]``, the value of the state after the last step.
        gamma, lambda_: discount and λ.
    """
    assert rewards.ndim == 2, f"rewards must be [B, T], got {tuple(rewards.shape)}"
    assert rewards.shape == values.shape == ends.shape, (
        f"rewards, values, ends must share a shape, got {tuple(rewards.shape)}, {tuple(values.shape)}, "
        f"{tuple(ends.shape)}")
    assert value_bootstrap.shape == rewards.shape[:1], (
        f"value_bootstrap must be [B] = {tuple(rewards.shape[:1])}, got {tuple(value_bootstrap.shape)}")
    continues = gamma * ends.logical_not().to(values.dtype)  # [B, T]
    next_values = torch.cat((values[:, 1:], value_bootstrap.unsqueeze(1)), dim=1)  # [B, T]
    partial = rewards + continues * (1 - lambda_) * next_values
    returns = []
    last = value_bootstrap
    for t in reversed(range(rewards.size(1))):
        last = partial[:, t] + continues[:, t] * lambda_ * last
        returns.append(last)
    return torch.stack(returns[::-1], dim=1)


def mask_after_first_done(*, ends: torch.Tensor) -> torch.Tensor:
    """Bool mask ``[B, T]``: True up to and including the first end of each row (all True without one)."""
    assert ends.ndim == 2, f"ends must be [B, T], got {tuple(ends.shape)}"
    ends = ends.long()
    first = torch.argmax(ends, dim=1, keepdim=True)  # first 1 (0 when there is none)
    steps = torch.arange(ends.size(1), device=ends.device).unsqueeze(0)
    return (steps <= first) | (ends.sum(dim=1, keepdim=True) == 0)


def pixels_to_float(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels in [0, 255] → float32 in [0, 1]; floating pixels (already in [0, 1]) pass through."""
    if pixels.dtype == torch.uint8:
        return pixels.float().div(255)
    if not pixels.is_floating_point():
        raise TypeError(f"pixels must be uint8 or floating point in [0, 1], got {pixels.dtype}")
    return pixels


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` where ``mask`` (broadcast from the left) is True, without a host sync (the tokenizer's
    and the world model's losses over real steps)."""
    m = mask.reshape(*mask.shape, *([1] * (x.ndim - mask.ndim))).to(x.dtype)
    return (x * m).sum() / (m.sum() * (x.numel() // mask.numel()))


def masked_step_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over the steps where ``mask`` (of ``x``'s shape) is True, 0 where there is none (the
    actor-critic's terms over the imagined steps up to the first predicted end)."""
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp_min(1)
