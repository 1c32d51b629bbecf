"""What an episode store takes on disk: the bytes of a step and of a store (estimated from the config
alone, before a run writes anything), the blocks a folder holds, and the reservation of rows' blocks
before they are written through the memory maps.
"""

import os
from pathlib import Path

import torch
from tensordict import TensorDict, TensorDictBase

from torchrl_deltairis import keys
from torchrl_deltairis.data.batch_input import steps_from_batch
from torchrl_deltairis.data.episode_index import assign_episodes, with_episodes

PADDING_ROW = 0  # the all-zero row that padded segment positions read (row 0 of every store)


def bytes_per_step(frame_shape: tuple[int, ...]) -> int:
    """Bytes one stored step takes in the memmap files, for frames of ``frame_shape`` (C, H, W): the
    sum over the columns ``add_batch`` writes (``keys.STORE_KEYS``) of their item sizes, measured on
    one step built by the same code (``steps_from_batch``, then the episode columns). Crafter's
    (3, 64, 64): 12,318 (12,288 of frame, 30 of action, reward, flags, episode and step)."""
    flag = torch.zeros(1, 1, dtype=torch.bool)
    one = TensorDict({keys.PIXELS: torch.zeros(1, 1, *frame_shape, dtype=torch.uint8),
                      keys.ACTION: torch.zeros(1, 1, dtype=torch.int64), keys.NEXT_REWARD: torch.zeros(1, 1),
                      keys.NEXT_TERMINATED: flag, keys.NEXT_TRUNCATED: flag}, batch_size=[1, 1])
    steps, done = steps_from_batch(one, None)
    no_episode = torch.full((1,), -1, dtype=torch.int64)
    steps = with_episodes(steps, assign_episodes(done, no_episode, torch.zeros(1, dtype=torch.int64), 0))
    return sum(column.element_size() * column.numel() for column in steps.values(True, True))


def store_bytes(num_steps: int, frame_shape: tuple[int, ...]) -> int:
    """Disk bytes of a store holding ``num_steps`` steps: the padding row and the steps, each
    ``bytes_per_step`` (the memmap files are sparse: rows never written take no space; nothing at all
    before the first step). What a file system allocates differs by less than one block per file
    (the rounding of each file to whole blocks, and the three small JSON records)."""
    return (PADDING_ROW + 1 + num_steps) * bytes_per_step(frame_shape) if num_steps > 0 else 0


def allocated_bytes(directory: str | Path) -> int:
    """Disk bytes the files under ``directory`` take (allocated blocks, not apparent sizes: a
    store's sparse files count only the rows written); 0 when it does not exist."""
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            try:
                blocks = os.lstat(os.path.join(root, name)).st_blocks
            except FileNotFoundError:  # a temporary file replaced meanwhile: nothing to count
                continue
            total += blocks * 512
    return total


def reserve_rows(storage_dir: Path, padding: TensorDictBase, start: int, count: int) -> None:
    """Allocates the disk blocks of rows ``start .. start + count - 1`` in every memmap file of a store
    (``posix_fallocate``; ``padding``: its padding row, one row of every column) before they are written
    through the memory maps. On a full disk the write then fails here with ``OSError(ENOSPC)`` naming the
    file, which the CLI reports in one line, instead of the kernel killing the process with SIGBUS at the
    first page it cannot back (nothing is committed either way). Only the padding row, laid out by a
    store's first write, is written without it."""
    for key, column in padding.items():
        size = column.numel() * column.element_size()
        path = storage_dir / f"{key}.memmap"
        fd = os.open(path, os.O_RDWR)
        try:
            os.posix_fallocate(fd, start * size, count * size)
        except OSError as err:
            raise OSError(err.errno, os.strerror(err.errno), str(path)) from None
        finally:
            os.close(fd)
