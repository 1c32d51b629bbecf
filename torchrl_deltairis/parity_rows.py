"""The parity command's rows: an output of ours against the reference fixture's, within ``ATOL`` /
``RTOL`` (exact for integers; frames rounded to 1/255 compared before the rounding), and the table printed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch


ATOL = RTOL = 1e-4  # absolute and relative tolerance of a float output


PARTED = "parted"
"""The status of an output that the reference, on the CPU that made the fixture, computed from other
frames than ours (a rollout that parted ways at a rounding tie, :func:`rounding_ties`): not compared."""


PIXEL_LEVELS = 255


@dataclass
class ParityRow:
    key: str
    status: str
    """'PASS', 'FAIL' or 'not run'"""
    max_abs_error: float | None = None
    note: str = ""


def flatten_outputs(outputs: Mapping[str, Any], prefix: str = "") -> dict[str, torch.Tensor]:
    """Nested fixture outputs → ``{"a.b.c": tensor}``; entries ending in ``.inputs`` (inputs) and
    ``.trace`` (the reference's draws, replayed by :class:`DrawReplay`) are skipped."""
    flat = {}
    for key, value in outputs.items():
        name = f"{prefix}{key}"
        if name.endswith((".inputs", ".trace")):
            continue
        if isinstance(value, Mapping):
            flat.update(flatten_outputs(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def compare(key: str, ours: torch.Tensor | None, expected: torch.Tensor) -> ParityRow:
    """One row: exact comparison for integer / bool outputs, allclose(1e-4, 1e-4) for floats."""
    if ours is None:
        return ParityRow(key, "not run")
    ours = ours.detach().cpu()
    if ours.shape != expected.shape:
        return ParityRow(key, "FAIL", None, f"shape {tuple(ours.shape)}, expected {tuple(expected.shape)}")
    if ours.numel() == 0:
        return ParityRow(key, "PASS", 0.0)
    err = (ours.double() - expected.double()).abs().max().item()
    if expected.is_floating_point():
        ok = torch.allclose(ours.double(), expected.double(), atol=ATOL, rtol=RTOL)
    else:
        ok = torch.equal(ours.to(expected.dtype), expected)
    return ParityRow(key, "PASS" if ok else "FAIL", err)


def compare_rounded(key: str, ours: torch.Tensor, unrounded: torch.Tensor,
                    expected: torch.Tensor) -> ParityRow:
    """Frames rounded to 1/255 steps: the tolerance applies before the rounding.

    A pixel passes if a value within ``ATOL`` of our unrounded output rounds to the fixture's value, i.e.
    if its distance to the fixture's rounding interval [e - 0.5/255, e + 0.5/255] is at most ``ATOL``.
    A plain comparison would fail wherever float noise (which differs between CPUs, thread counts and
    batch shapes, ~1e-6 here) straddles a rounding boundary. The row reports that distance and how
    many pixels round to a neighbouring level.
    """
    row = compare(key, ours, expected)
    if row.status == "PASS" or row.max_abs_error is None:
        return row
    half = 0.5 / PIXEL_LEVELS
    distance = ((unrounded.double() - expected.double()).abs() - half).clamp_min(0).max().item()
    flipped = int(((ours - expected).abs() > half).sum())
    ok = distance <= ATOL and row.max_abs_error <= 1.0 / PIXEL_LEVELS + ATOL
    note = f"{flipped}/{expected.numel()} pixels one level off; distance before rounding {distance:.1e}"
    return ParityRow(key, "PASS" if ok else "FAIL", distance, note)


def format_rows(rows: list[ParityRow]) -> str:
    width = max(len(r.key) for r in rows)
    lines = [f"{'key':<{width}}  {'max abs error':>13}  result"]
    for r in rows:
        err = "" if r.max_abs_error is None else f"{r.max_abs_error:.3e}"
        lines.append(f"{r.key:<{width}}  {err:>13}  {r.status}{'  ' + r.note if r.note else ''}")
    return "\n".join(lines)
