"""What a run shows besides numbers: saved episodes and videos (``media/`` of the run folder).

``media/episodes/{train,test}/{recent,best}/``: the ``num_episodes_to_save`` most recent and the
best (highest return) finished episodes of each split, one file per episode,
``epoch_EEEE_episode_NNNNNN_return_R.pt``: a dict of tensors with ``keys.STORE_KEYS`` (``pixels``
uint8 [T, 3, 64, 64], ``action``, ``reward``, ``terminated``, ``truncated``, ...), readable with
``torch.load(path, weights_only=True)``. Files are written atomically; best episodes survive a resume
(the folder is the record).

``media/videos/``: GIFs (Pillow writes them; no codec needed): ``epoch_EEEE_test.gif``, the first test
episodes of an evaluation side by side, and ``epoch_EEEE_imagination.gif``, rollouts of the policy in
the world model from real context frames (real frames framed in blue, imagined ones in orange, a red
frame after a predicted end).
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from torchrl_deltairis import keys
from torchrl_deltairis.data import EpisodeStore, torch_save_atomic
from torchrl_deltairis.data.atomic_io import write_bytes_atomic

_NAME = re.compile(r"epoch_(\d+)_episode_(\d+)_return_(-?[\d.]+(?:e[-+]?\d+)?)\.pt$")
REAL_COLOR, IMAGINED_COLOR, END_COLOR = (40, 90, 230), (240, 150, 30), (220, 30, 30)


def episode_file_name(epoch: int, episode: int, episode_return: float) -> str:
    return f"epoch_{epoch:04d}_episode_{episode:06d}_return_{episode_return:.4g}.pt"


def parse_episode_file_name(path: str | Path) -> tuple[int, int, float] | None:
    """(epoch, episode, return) of a saved episode file, None for any other file."""
    match = _NAME.search(Path(path).name)
    return (int(match[1]), int(match[2]), float(match[3])) if match else None


class EpisodeSaver:
    """Keeps ``recent/`` and ``best/`` episode folders of one split up to date with a store.

    ``update(epoch)`` looks at the episodes finished since the last call (at construction, every
    episode already finished counts as seen, so a resumed run does not rewrite them).
    """

    def __init__(self, directory: str | Path, store: EpisodeStore, num_to_save: int):
        if num_to_save < 0:
            raise ValueError(f"num_episodes_to_save must be >= 0, got {num_to_save}")
        self.directory, self.store, self.num_to_save = Path(directory), store, int(num_to_save)
        self.seen = set(self._finished())

    def _finished(self) -> list[int]:
        return torch.nonzero(self.store.finished).flatten().tolist()

    def reset_seen(self) -> None:
        """Forget every episode (the store was cleared: ids restart at 0)."""
        self.seen = set()

    def _saved(self, kind: str) -> list[tuple[float, int, Path]]:
        folder = self.directory / kind
        found = [(parse_episode_file_name(p), p) for p in folder.glob("*.pt")] if folder.exists() else []
        return [(meta[2], meta[0] * 10**7 + meta[1], path) for meta, path in found if meta is not None]

    def _write(self, kind: str, epoch: int, episode: int, episode_return: float) -> None:
        data = self.store.episode(episode)
        path = self.directory / kind / episode_file_name(epoch, episode, episode_return)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch_save_atomic({k: data.get(k).clone() for k in keys.STORE_KEYS}, path, fsync=False)

    def update(self, epoch: int) -> list[int]:
        """Saves the new finished episodes that belong in ``recent``/``best``; returns their ids."""
        new = [e for e in self._finished() if e not in self.seen]
        self.seen.update(new)
        if not new or self.num_to_save == 0:
            return new
        returns = {e: float(self.store.episode(e).get(keys.REWARD).sum()) for e in new}
        for e in new[-self.num_to_save:]:
            self._write("recent", epoch, e, returns[e])
        self._prune("recent", key=lambda item: item[1])  # newest (epoch, episode) first
        best = self._saved("best")
        floor = sorted(r for r, _, _ in best)[-self.num_to_save] if len(best) >= self.num_to_save else -np.inf
        for e in sorted(new, key=returns.get, reverse=True)[:self.num_to_save]:
            if returns[e] > floor:
                self._write("best", epoch, e, returns[e])
        self._prune("best", key=lambda item: (item[0], item[1]))
        return new

    def _prune(self, kind: str, key) -> None:
        for _, _, path in sorted(self._saved(kind), key=key, reverse=True)[self.num_to_save:]:
            path.unlink(missing_ok=True)


def _frame(image: torch.Tensor, color: Sequence[int] | None, border: int = 2) -> np.ndarray:
    """uint8 [3, H, W] → HWC with a coloured border (or none)."""
    out = image.permute(1, 2, 0).cpu().numpy().copy()
    if color is not None:
        out[:border], out[-border:], out[:, :border], out[:, -border:] = color, color, color, color
    return out


def _tile(frames: Sequence[np.ndarray], columns: int) -> np.ndarray:
    h, w, c = frames[0].shape
    rows = -(-len(frames) // columns)
    grid = np.zeros((rows * h, columns * w, c), dtype=np.uint8)
    for i, f in enumerate(frames):
        r, col = divmod(i, columns)
        grid[r * h:(r + 1) * h, col * w:(col + 1) * w] = f
    return grid


def write_gif(path: str | Path, frames: Sequence[np.ndarray], fps: float = 15.0, scale: int = 2) -> Path:
    """An animated GIF of uint8 HWC frames (nearest-neighbour upscaled by ``scale``)."""
    if not frames:
        raise ValueError(f"no frames to write to {path}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST) for f in frames]
    data = io.BytesIO()
    images[0].save(data, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    write_bytes_atomic(path, data.getvalue())
    return path


def episodes_video(store: EpisodeStore, path: str | Path, max_episodes: int = 4, max_frames: int = 500) -> Path | None:
    """The first ``max_episodes`` episodes of ``store`` side by side (a finished one holds its last frame)."""
    episodes = [store.episode(e).get(keys.PIXELS)[:max_frames] for e in range(min(store.num_episodes, max_episodes))]
    if not episodes:
        return None
    length = max(len(p) for p in episodes)
    frames = [_tile([_frame(p[min(t, len(p) - 1)], None) for p in episodes], columns=len(episodes))
              for t in range(length)]
    return write_gif(path, frames)


def imagination_video(context_pixels: torch.Tensor, imagined_pixels: torch.Tensor, ends: torch.Tensor,
                      path: str | Path, columns: int = 4) -> Path:
    """Rollouts in the world model: ``context_pixels`` uint8 [B, L, 3, H, W] (real), then
    ``imagined_pixels`` uint8 [B, H, 3, H, W] with ``ends`` bool [B, H] (predicted ends)."""
    batch, horizon = imagined_pixels.shape[:2]
    ended = torch.cumsum(ends.long(), dim=1) > 0
    frames = []
    for t in range(context_pixels.shape[1]):
        frames.append(_tile([_frame(context_pixels[b, t], REAL_COLOR) for b in range(batch)], columns))
    for t in range(horizon):
        frames.append(_tile([_frame(imagined_pixels[b, t], END_COLOR if ended[b, t] else IMAGINED_COLOR)
                             for b in range(batch)], columns))
    return write_gif(path, frames, fps=4)
