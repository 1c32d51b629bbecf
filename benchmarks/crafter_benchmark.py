"""Crafter: S seeds of the reference's Crafter training, then the 22 achievement success rates and the
score per seed and overall, on training and on test episodes, as tables and a bar chart.

    python benchmarks/crafter_benchmark.py                        # 5 seeds, one after another
    python benchmarks/crafter_benchmark.py --launcher joblib --jobs 2   # 2 at a time on this machine
    python benchmarks/crafter_benchmark.py --launcher slurm_gpu hydra.launcher.partition=gpu   # a SLURM job per seed
    python benchmarks/crafter_benchmark.py --report-only          # tables and chart of the finished seeds
    python benchmarks/crafter_benchmark.py --smoke                # 1 seed, tiny models, CPU

(Not ``benchmarks/crafter.py``: a script runs with its folder first on ``sys.path``, so a file of that
name would stand in for the ``crafter`` package in every benchmark that makes a Crafter env.)

Each seed is ``train.py env=crafter params=crafter params.common.seed=<seed>`` (1,000 epochs, 10M
steps) in ``<sweep-dir>/crafter/seed<seed>``, launched, resumed and skipped exactly as the Atari runs
of ``benchmarks/atari100k.py`` (same options: ``--launcher``, ``--jobs``, ``--status``, ``--dry-run``,
Hydra overrides as ``key=value``).

Two definitions are reported side by side: *train* is the Crafter paper's (Hafner, 2021): success rates
over every training episode of the run; *test* is the reference's evaluation: the test episodes of the
final evaluation (64 episodes, epsilon 0). A success rate is the percentage of episodes that unlocked
the achievement; the score is ``exp(mean_i log(1 + s_i)) - 1``. Overall, as the Crafter paper's
analysis code: the per-seed rates and scores averaged over seeds (± the standard deviation over seeds).
Outputs in ``<sweep-dir>/report/`` (``--out``): ``crafter.json`` (everything), ``crafter_train.csv``,
``crafter_test.csv`` and ``crafter_success_rates.png`` (bars: the mean over seeds, whiskers: min and max,
log scale as in the Crafter paper).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

if __package__ in (None, ""):  # run as a file: import the sibling scripts as the benchmarks package
    sys.path[0] = str(Path(__file__).resolve().parents[1])
from benchmarks import sweep as sweeps

SPLITS = ("train", "test")
# Smoke budget: 2 epochs, one evaluation (the last epoch's) of 2 test episodes cut at 300 steps.
SMOKE_OVERRIDES = ("params.common.epochs=2", "params.evaluation.every=2", "env.test.max_episode_steps=300",
                   "wandb.mode=disabled")


def split_of(result: dict, split: str) -> dict | None:
    """``results.json["crafter"][split]``: episodes, score, success_rates (None: no episode finished)."""
    crafter = result.get("crafter")
    if not isinstance(crafter, dict):
        raise sweeps.SweepError(f"seed {result.get('seed')}: results.json has no 'crafter' entry (a Crafter "
                                f"run writes one; this is game {result.get('game')!r})")
    return crafter.get(split)


def summarise(results: list[dict]) -> dict:
    """Per seed and overall (mean, std, min, max over seeds; None without episodes) rates and scores."""
    per_split = {split: {r["seed"]: split_of(r, split) for r in results} for split in SPLITS}
    present = [s for seeds in per_split.values() for s in seeds.values() if s is not None]
    names = list(present[0]["success_rates"]) if present else []
    out: dict = {"seeds": [r["seed"] for r in results], "achievements": names, "splits": {}}
    for split, per_seed in per_split.items():
        done = [s for s in per_seed.values() if s is not None]
        overall = {}
        for name in names + ["score"]:
            values = [s["score"] if name == "score" else s["success_rates"][name] for s in done]
            overall[name] = None if not values else {"mean": statistics.fmean(values), "min": min(values),
                                                     "std": statistics.pstdev(values), "max": max(values)}
        out["splits"][split] = {"per_seed": per_seed, "overall": overall,
                                "episodes": sum(s["episodes"] for s in done)}
    return out


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _value(split_result: dict | None, name: str) -> float | None:
    if split_result is None:
        return None
    return split_result["score"] if name == "score" else split_result["success_rates"][name]


def format_table(summary: dict, split: str) -> str:
    """Rows: the 22 achievements, the score, the episode count; columns: seeds, mean ± std."""
    part, seeds = summary["splits"][split], summary["seeds"]
    head = [f"{split} episodes", *(f"seed {s}" for s in seeds), "mean ± std"]
    rows = []
    for name in summary["achievements"] + ["score"]:
        o = part["overall"][name]
        mean = "–" if o is None else f"{o['mean']:.2f} ± {o['std']:.2f}"
        rows.append([name, *(_cell(_value(part["per_seed"][s], name)) for s in seeds), mean])
    rows.append(["episodes", *(str(part["per_seed"][s]["episodes"] if part["per_seed"][s] else 0) for s in seeds),
                 str(part["episodes"])])
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [head] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    """Grouped bars per achievement (train, test): the mean over seeds, whiskers from min to max."""
    fig, ax = plt.subplots(figsize=(14, 4.5))
    names = summary["achievements"]
    x = np.arange(len(names))
    for i, split in enumerate(SPLITS):
        overall = summary["splits"][split]["overall"]
        if overall.get("score") is None:
            continue
        mean = np.array([overall[n]["mean"] for n in names])
        err = np.array([[overall[n]["mean"] - overall[n]["min"] for n in names],
                        [overall[n]["max"] - overall[n]["mean"] for n in names]])
        ax.bar(x + (i - 0.5) * 0.4, np.maximum(mean, 1e-2), 0.4, yerr=err, capsize=2,
               label=f"{split} episodes (score {overall['score']['mean']:.1f} %)")
    ax.set_yscale("log")
    ax.set_ylim(1e-2, 100)
    ax.set_ylabel("success rate (%)")
    ax.set_xticks(x, [n.replace("_", " ") for n in names], rotation=60, ha="right")
    ax.set_title(f"Crafter, {len(summary['seeds'])} seeds")
    ax.legend()
    fig.savefig(path, bbox_inches="tight", dpi=120)
    plt.close(fig)


def write_report(summary: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "crafter.json").write_text(json.dumps(summary, indent=2))
    stats = ("mean", "std", "min", "max")
    for split in SPLITS:
        part = summary["splits"][split]
        with open(out / f"crafter_{split}.csv", "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["metric", *(f"seed{s}" for s in summary["seeds"]), *stats])
            for name in summary["achievements"] + ["score"]:
                o = part["overall"][name] or {}
                writer.writerow([name, *(_value(part["per_seed"][s], name) for s in summary["seeds"]),
                                 *(o.get(k) for k in stats)])
    plot(summary, out / "crafter_success_rates.png")


def report(results: list[dict], out: Path) -> dict:
    """Print both tables, write the JSON, CSVs and chart; returns the summary."""
    if not results:
        raise sweeps.SweepError("no finished Crafter run to report (no results.json in the run folders)")
    summary = summarise(sorted(results, key=lambda r: r["seed"]))
    for split in SPLITS:
        print(format_table(summary, split), end="\n\n")
    write_report(summary, out)
    print(f"report written to {out}", flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sweeps.add_sweep_arguments(parser, "outputs/crafter", 5)
    parser.add_argument("--report-only", action="store_true", help="report the finished seeds, launch nothing")
    parser.add_argument("--out", default=None, help="report folder (default <sweep-dir>/report)")
    args = parser.parse_args(argv)
    try:
        sweep = sweeps.build_sweep(args, "crafter", "crafter", ["crafter"], "outputs/crafter", SMOKE_OVERRIDES)
        if args.report_only:
            print(sweep.status(), flush=True)
            finished = not sweep.blocks()
        else:
            finished = sweeps.run_sweep(sweep, args)
        if not (args.status or args.dry_run):
            if results := sweep.results():
                report(results, Path(args.out) if args.out else sweep.sweep_dir / "report")
            else:
                print("no finished seed to report yet", file=sys.stderr)
    except sweeps.SweepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0 if finished else 1


if __name__ == "__main__":
    sys.exit(main())
