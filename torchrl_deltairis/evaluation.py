"""Evaluation of the tokenizer and the world model on held-out episodes, and reconstruction images.

As the reference's ``eval_agent`` (its ``src/trainer.py``): the losses over the *whole* test store, cut into
consecutive chunks of ``sequence_length`` steps per episode (the last chunk of an episode padded on
the right), in eval mode (the codebook is not updated), fp32, without gradients. Reconstructions
show, for a few segments, the real frames, the tokenizer's one-step reconstructions (teacher
forced) and their error, as one PNG per evaluation.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tensordict import TensorDictBase

from torchrl_deltairis import keys
from torchrl_deltairis.data import PADDING_ROW, EpisodeStore
from torchrl_deltairis.modules import Tokenizer
from torchrl_deltairis.functional import pixels_to_float


def traverse_segments(store: EpisodeStore, sequence_length: int, batch_size: int) -> Iterator[TensorDictBase]:
    """Every stored step exactly once: batches ``[B, L]`` of consecutive chunks of each episode,
    right-padded with the store's zero row and ``mask_padding`` False there."""
    index = store.index
    windows = [(episode, start) for episode in range(store.num_episodes)
               for start in range(0, int(index.lengths[episode]), sequence_length)]
    offsets, order = index.offsets(), index.order()
    for first in range(0, len(windows), batch_size):
        chunk = torch.tensor(windows[first:first + batch_size])
        episodes, starts = chunk[:, 0], chunk[:, 1]
        position = starts[:, None] + torch.arange(sequence_length)
        lengths = index.lengths[episodes][:, None]
        mask = position < lengths
        flat = offsets[episodes][:, None] + torch.minimum(position, lengths - 1)
        rows = torch.where(mask, order[flat].long(), PADDING_ROW)
        batch = store.storage[rows]
        batch.set(keys.MASK_PADDING, mask)
        yield batch


@torch.no_grad()
def evaluate_loss(loss: torch.nn.Module, batches: Iterator[TensorDictBase], device: torch.device,
                  prefix: str) -> dict[str, float]:
    """Mean of every term of ``loss`` over the batches (eval mode, no autocast, no gradient)."""
    was_training = loss.training
    loss.eval()
    sums: dict[str, torch.Tensor] = {}
    count = 0
    for batch in batches:
        for key, value in loss(batch.to(device)).items():
            sums[key] = sums.get(key, 0.0) + value.float()
        count += 1
    loss.train(was_training)
    return {f"{prefix}{key}": float(value) / count for key, value in sums.items()} if count else {}


@torch.no_grad()
def reconstruction_image(tokenizer: Tokenizer, segments: TensorDictBase) -> np.ndarray:
    """uint8 HWC image: for each segment [T] three rows of T frames: the real frames, their
    reconstructions from (o_t, a_t, tokens of o_{t+1}) with the true first frame in front, and
    ``255 - mean |difference|`` (white where the reconstruction is exact)."""
    frames = pixels_to_float(segments.get(keys.PIXELS))  # [N, T, 3, H, W]
    actions = segments.get(keys.ACTION)
    was_training = tokenizer.training
    tokenizer.eval()
    rebuilt = tokenizer.encode_decode(frames[:, :-1], actions[:, :-1], frames[:, 1:])
    tokenizer.train(was_training)
    rebuilt = torch.cat((frames[:, :1], rebuilt.to(frames.dtype)), dim=1)
    diff = (frames - rebuilt).abs().mean(2, keepdim=True).expand_as(frames)
    rows = torch.stack((frames, rebuilt, 1 - diff), dim=1)  # [N, 3, T, 3, H, W]
    n, r, t, c, h, w = rows.shape
    image = rows.permute(0, 1, 4, 2, 5, 3).reshape(n * r * h, t * w, c)
    return (image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def save_reconstructions(tokenizer: Tokenizer, segments: TensorDictBase, directory: str | Path, epoch: int) -> Path:
    """Writes ``epoch_<epoch as 4 digits>.png`` (see :func:`reconstruction_image`) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"epoch_{epoch:04d}.png"
    Image.fromarray(reconstruction_image(tokenizer, segments)).save(path)
    return path
