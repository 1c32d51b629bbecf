"""The one timer of the benchmarks: wall-clock seconds of a block, with a CUDA device synchronised
before and after (the kernels queued by the block are part of what it timed, and none queued earlier)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import torch

__all__ = ["stopwatch", "sync"]


def sync(device: torch.device | str | None) -> None:
    """Waits for the kernels queued on ``device`` (nothing to wait for on a CPU)."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def stopwatch(device: torch.device | str | None = None) -> Iterator[Callable[[], float]]:
    """``with stopwatch(device) as elapsed: ...``, then ``elapsed()`` is the block's seconds (inside the
    block: the seconds so far)."""
    sync(device)
    start = time.perf_counter()
    end: list[float] = []
    try:
        yield lambda: (end[0] if end else time.perf_counter()) - start
    finally:
        sync(device)
        end.append(time.perf_counter())
