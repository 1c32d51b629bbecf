"""Check a collector batch and turn it into the episode store's per-step columns."""

import torch
from tensordict import TensorDict, TensorDictBase

from torchrl_deltairis import keys

_REQUIRED = (keys.PIXELS, keys.ACTION, keys.NEXT_REWARD, keys.NEXT_TERMINATED, keys.NEXT_TRUNCATED)


def _per_step(batch: TensorDictBase, key, batch_shape: torch.Size) -> torch.Tensor:
    """The value of ``key`` with shape ``batch_shape`` (a trailing singleton dim is dropped)."""
    value = batch.get(key)
    if value.shape == batch_shape + (1,):
        value = value.squeeze(-1)
    if value.shape != batch_shape:
        raise ValueError(
            f"{key!r}: expected shape {tuple(batch_shape)} or {tuple(batch_shape) + (1,)}, "
            f"got {tuple(value.shape)}"
        )
    return value


def steps_from_batch(
    batch: TensorDictBase, frame_shape: tuple[int, ...] | None
) -> tuple[TensorDictBase, torch.Tensor]:
    """Columns ``pixels, action, reward, terminated, truncated`` [E, T] and ``done`` [E, T] of a batch.

    Args:
        batch: [num_envs, T] (env-major, as a TorchRL ``Collector`` yields for a batched env) or [T]
            (one env); keys ``"pixels"`` uint8 [.., C, H, W], ``"action"`` int [..] or [.., 1],
            ``("next", "reward" | "terminated" | "truncated")`` [..] or [.., 1], optionally
            ``("next", "done")``, which must equal terminated | truncated.
        frame_shape: the store's (C, H, W), or None for a store that has no frame yet.
    """
    if not isinstance(batch, TensorDictBase):
        raise TypeError(f"expected a TensorDict batch, got {type(batch).__name__}")
    if batch.ndim not in (1, 2) or batch.numel() == 0:
        raise ValueError(f"expected a non-empty batch of dims [num_envs, T] or [T], got {tuple(batch.shape)}")
    if batch.ndim == 1:
        batch = batch.unsqueeze(0)
    missing = [key for key in _REQUIRED if key not in batch.keys(include_nested=True)]
    if missing:
        raise KeyError(f"batch lacks {missing}; the episode store needs {list(_REQUIRED)}")
    batch = batch.to("cpu")
    shape = batch.shape
    pixels = batch.get(keys.PIXELS)
    if pixels.dtype != torch.uint8 or pixels.ndim != 5:
        raise ValueError(
            f"'pixels': expected uint8 [*{tuple(shape)}, C, H, W], got {pixels.dtype} {tuple(pixels.shape)}"
        )
    if frame_shape is not None and tuple(pixels.shape[2:]) != tuple(frame_shape):
        raise ValueError(
            f"'pixels': the store holds frames of shape {tuple(frame_shape)}, got {tuple(pixels.shape[2:])}"
        )
    action = _per_step(batch, keys.ACTION, shape)
    if action.dtype.is_floating_point or action.dtype == torch.bool:
        raise ValueError(f"'action': expected integer category indices, got {action.dtype}")
    terminated = _per_step(batch, keys.NEXT_TERMINATED, shape).bool()
    truncated = _per_step(batch, keys.NEXT_TRUNCATED, shape).bool()
    done = terminated | truncated
    if keys.NEXT_DONE in batch.keys(include_nested=True):
        given = _per_step(batch, keys.NEXT_DONE, shape).bool()
        if not torch.equal(given, done):
            raise ValueError("('next', 'done') differs from terminated | truncated")
    steps = TensorDict(
        {
            keys.PIXELS: pixels,
            keys.ACTION: action.long(),
            keys.REWARD: _per_step(batch, keys.NEXT_REWARD, shape).float(),
            keys.TERMINATED: terminated,
            keys.TRUNCATED: truncated,
        },
        batch_size=shape,
    )
    return steps, done
