"""The one host → device transfer of sampled training batches.

Where tensors live in a run (docs/devices.md):

- On the CPU: the envs, the episode store and its index, the per-episode visit counts and the
  samplers (their generators and the episode ids they draw). This bookkeeping never moves.
- On ``params.common.device``: the models, their optimizers, imagination and every loss.
- Host → device: a sampled segment batch, through :func:`to_device` (the trainer calls it after the
  counts have been updated from the CPU batch), and a collected step, through the stock
  ``Collector``'s ``policy_device``.
- Device → host: a collected step's policy output, through the ``Collector``'s ``env_device`` /
  ``storing_device``; metrics, once per epoch, as Python floats.
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase

__all__ = ["to_device"]


def to_device(batch: TensorDictBase, device: torch.device) -> TensorDictBase:
    """``batch`` on ``device``: unchanged when it is there already; to a CUDA device from pinned
    memory with ``non_blocking=True``, so that the copy overlaps the host's work until the first
    kernel that reads it (the stream orders them: no host sync)."""
    device = torch.device(device)
    if batch.device == device or device.type == "cpu" and batch.device is not None and batch.device.type == "cpu":
        return batch
    if device.type == "cuda":
        return batch.pin_memory().to(device, non_blocking=True)
    return batch.to(device)
