"""speed.py's results as Markdown: the table of one run, and the comparison of two runs' ``--json`` files
(the rows both have, old against new).
"""

import json
from pathlib import Path

from benchmarks import roofline

def format_table(results: list[dict]) -> str:
    lines = ["| variant | step | precision | memory format | ours (s) | reference, Part D (s) "
             "| reference / ours | ATen ops / step | host syncs / step | GFLOP/s (share of the matmul peak) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['variant']} | {r['step']} | {r['precision']} | {r['memory_format']} | "
                     f"{r['seconds_median']:.3f} | {r['reference_seconds_cpu']:.2f} | "
                     f"{r['speedup_vs_reference']:.2f}× | {_count(r, 'ops_per_step')} | "
                     f"{_count(r, 'syncs_per_step')} | {roofline.describe(r)} |")
    return "\n".join(lines)


def _count(row: dict, key: str) -> str:
    """A row's ops or syncs per step for a table cell (blank in a file saved before they were counted)."""
    return f"{row[key]:g}" if key in row else ""


def row_key(row: dict) -> tuple:
    """What a row measures: device type, variant, step, precision, memory format, batch."""
    return (row["device"].split(":")[0], row["variant"], row["step"], row["precision"],
            row.get("memory_format", "-"), row.get("batch", "-"))


def row_metric(row: dict) -> tuple[float, bool]:
    """(value, higher is better): seconds per step, or imagined steps per second through ``env.rollout``."""
    if "seconds_median" in row:
        return row["seconds_median"], False
    return row["steps_per_s_rollout"], True


def read_rows(path: Path) -> list[dict]:
    """The rows of a ``--json`` file (or of a bare list of rows)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SystemExit(f"error: cannot read speed results from {path}: {err}") from None
    rows = data["results"] if isinstance(data, dict) and "results" in data else data
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "variant" in r for r in rows):
        raise SystemExit(f"error: {path}: expected a speed.py --json file ({{'results': [rows]}})")
    return rows


def compare(new: list[dict], old: list[dict]) -> str:
    """A markdown table of the rows both runs have: old, new, new/old and the speed-up (> 1: new is faster)."""
    old_by_key = {row_key(r): r for r in old}
    lines = ["| device | variant | step | precision | memory format | batch | old | new | new/old | speed-up |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    matched = 0
    for row in new:
        if (before := old_by_key.get(row_key(row))) is None:
            continue
        matched += 1
        (value, higher), (was, _) = row_metric(row), row_metric(before)
        unit = " steps/s" if higher else " s"
        speedup = value / was if higher else was / value
        lines.append("| " + " | ".join(map(str, row_key(row))) + f" | {was:.3f}{unit} | {value:.3f}{unit} | "
                     f"{value / was:.3f} | {speedup:.2f}× |")
    only_new = len(new) - matched
    only_old = len({row_key(r) for r in old} - {row_key(r) for r in new})
    lines.append(f"({matched} rows compared; {only_new} only in the new run, {only_old} only in the old one)")
    return "\n".join(lines)
