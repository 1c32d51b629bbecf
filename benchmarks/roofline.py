"""How close to the hardware's limit: the FLOPs of one piece of work (``torch.utils.flop_counter``) and
this machine's measured matmul rate in a precision, for ``benchmarks/speed.py``'s GFLOP/s column."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_flops(work: Callable[[], object]) -> float:
    """Floating-point operations of one call of ``work`` (matmuls, convolutions, attention; forward
    and backward), counted by ``FlopCounterMode`` on a run that is not timed; NaN where it cannot
    count (the actor-critic step: see below)."""
    try:
        with FlopCounterMode(display=False) as counter:
            work()
    except RuntimeError:  # its module tracker trips over TensorDict parameters (the actor-critic losses)
        return float("nan")
    return float(counter.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, precision: str, size: int | None = None, repeats: int = 5) -> float:
    """GFLOP/s of a square matmul on ``device`` in ``precision`` (fp32, or bf16 operands), the best of
    ``repeats`` after one warm-up: the rate the row's work is set against."""
    size = size or (8192 if device.type == "cuda" else 1536)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for i in range(repeats + 1):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        if i:
            best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def annotate(row: dict, flops: float, seconds: float, peak: float) -> dict:
    """Adds ``gflop`` (per step), ``gflop_per_s`` and ``share_of_peak`` to a result row."""
    rate = flops / seconds / 1e9
    return {**row, "gflop": flops / 1e9, "gflop_per_s": rate, "peak_gflop_per_s": peak, "share_of_peak": rate / peak}


def describe(row: dict) -> str:
    """" 4.77 GFLOP, 166 GFLOP/s = 97 % of 171" for a printed line or a table cell."""
    if "gflop_per_s" not in row or row["gflop"] != row["gflop"]:  # absent or not countable (NaN)
        return ""
    return (f"{row['gflop']:.2f} GFLOP, {row['gflop_per_s']:.0f} GFLOP/s = "
            f"{100 * row['share_of_peak']:.0f} % of {row['peak_gflop_per_s']:.0f}")
