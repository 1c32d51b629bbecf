"""The learning checks (torchrl_deltairis/learning_checks.py) over seeds and intra-op thread counts.

    python benchmarks/learning_checks.py                                  # every check, seeds 0-4, 1 and 2 threads
    python benchmarks/learning_checks.py --checks reach --seeds 0 1 --threads 2
    python benchmarks/learning_checks.py --out benchmarks/results/learning_checks_<date>_<cpu>
    python benchmarks/learning_checks.py --checks reach --out DIR --from-runs   # tabulate finished runs again

Each run is a fresh ``train.py`` process (its own run folder under ``--out``); runs with one thread go
two at a time on a 2-core machine (``--jobs``). Prints one row per check, thread count and seed (the
test curve, the score: the better of the last two evaluations, pass or fail, minutes), then a
summary; writes ``results.json`` and ``table.md`` under ``--out``. Float rounding differs with the
thread count and the CPU, so every (seed, threads) pair is another draw of the same check.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from torchrl_deltairis.learning_checks import CHECKS, read_check, results_json, run_check
from torchrl_deltairis.machine import describe


def row(r) -> str:
    curve = ", ".join(f"{ret:.2f}" for _, ret in r.curve)
    status = "pass" if r.passed else ("FAIL" if r.returncode == 0 else f"error {r.returncode}")
    entropy = f"{r.entropy[0][1]:.2f} → {r.entropy[-1][1]:.2f}" if r.entropy else ""
    return (f"| {r.name} | {r.threads} | {r.seed} | {curve} | {r.score:.2f} | {status} | {entropy} | "
            f"{f'{r.seconds / 60:.1f}' if r.seconds else '–'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", nargs="+", default=list(CHECKS), choices=list(CHECKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--jobs", type=int, default=None,
                        help="runs at a time (default: cores // threads, at least 1)")
    parser.add_argument("--out", type=Path, default=None, help="where run folders and the table go (default: a temp dir)")
    parser.add_argument("--from-runs", action="store_true",
                        help="run nothing: read the run folders a sweep (an interrupted one too) left under --out")
    parser.add_argument("overrides", nargs="*", help="extra train.py overrides for every run")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="learning_checks_"))
    out.mkdir(parents=True, exist_ok=True)
    print(describe(), flush=True)
    header = ("| check | threads | seed | test curve (mean return per evaluation) | score | result | "
              "policy entropy (first → last epoch) | minutes |\n|---|---|---|---|---|---|---|---|")
    print(header, flush=True)
    results = []
    for threads in args.threads:
        jobs = args.jobs or max(1, (os.cpu_count() or 1) // threads)
        runs = [(name, seed) for name in args.checks for seed in args.seeds]

        def one(job, threads=threads):
            name, seed = job
            run_dir = out / f"{name}_t{threads}_s{seed}"
            if args.from_runs:
                result = read_check(name, run_dir, seed=seed, threads=threads,
                                    returncode=0 if (run_dir / "results.json").exists() else -1,
                                    stderr_tail=f"{run_dir} holds no finished run")
            else:
                result = run_check(name, run_dir, seed=seed, threads=threads, extra=tuple(args.overrides))
            print(row(result), flush=True)
            return result

        with ThreadPoolExecutor(jobs) as pool:
            results += list(pool.map(one, runs))
    results.sort(key=lambda r: (list(CHECKS).index(r.name), r.threads, r.seed))
    lines = [header, *map(row, results)]
    summary = [f"{name}: {sum(r.passed for r in rs)}/{len(rs)} runs pass (bar {CHECKS[name].bar:.0%} of "
               f"{CHECKS[name].optimum:g}; {CHECKS[name].floor})"
               for name in args.checks if (rs := [r for r in results if r.name == name])]
    (out / "table.md").write_text(describe() + "\n\n" + "\n".join(lines) + "\n\n" + "\n".join(summary) + "\n")
    (out / "results.json").write_text(results_json(results))
    print("\n".join(["", *summary, f"table and runs: {out}"]))
    failed = [r for r in results if r.returncode]
    for r in failed[:2]:
        print(f"\n{r.name} seed {r.seed} threads {r.threads} exited {r.returncode}:\n{r.stderr_tail}")


if __name__ == "__main__":
    main()
