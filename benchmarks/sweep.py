"""The sweep machinery of atari100k.py and crafter_benchmark.py: ``train.py`` over env ids × seeds, one
run folder each, launched as Hydra multiruns (a block of unfinished runs per multirun), resumed where
they stopped (``params.common.resume=auto``), their states read from the folders (``results.json``: a
finished run; a checkpoint: a started one).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.score_inputs import RESULTS_FILE, game_name

ROOT = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = ROOT / "train.py"
SUBDIR = "${env.train.id}/seed${params.common.seed}"  # must match Sweep.folder


class SweepError(ValueError):
    """A usage or input problem, reported without a traceback."""


def read_result(folder: Path) -> dict | None:
    """The run's ``results.json``, or None while the run is not finished."""
    path = folder / RESULTS_FILE
    if not path.exists():
        return None
    try:
        result = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SweepError(f"{path}: not valid JSON ({err}); delete it to rerun the last epoch") from None
    if not isinstance(result, dict) or not {"game", "seed", "score"} <= result.keys():
        raise SweepError(f"{path}: expected a run record with game, seed and score, got {str(result)[:200]}")
    return result


def last_epoch(folder: Path) -> int | None:
    """The last epoch logged in the run's ``metrics.csv`` (None if it has none)."""
    path = folder / "metrics.csv"
    if not path.exists():
        return None
    with open(path, newline="") as file:
        epochs = [row.get("epoch") for row in csv.DictReader(file)]
    return int(epochs[-1]) if epochs and epochs[-1] else None


@dataclass(frozen=True)
class Run:
    """One (env id, seed) run and its folder."""

    game_id: str
    seed: int
    folder: Path

    def result(self) -> dict | None:
        return read_result(self.folder)

    def state(self) -> str:
        """``finished`` (results.json), ``started`` (a checkpoint to resume from) or ``new``."""
        if (self.folder / RESULTS_FILE).exists():
            return "finished"
        return "started" if (self.folder / "checkpoints" / "state.pt").exists() else "new"


@dataclass
class Sweep:
    """``train.py`` over env ids × seeds, one run folder each under ``sweep_dir``, through Hydra's multirun."""

    sweep_dir: Path
    env: str  # the Hydra env group (atari, crafter)
    params: str  # the Hydra params group (atari, crafter, smoke)
    game_ids: list[str]
    seeds: list[int]
    overrides: list[str] = field(default_factory=list)  # launcher settings, budgets, the user's overrides

    def folder(self, game_id: str, seed: int) -> Path:
        return self.sweep_dir / game_id / f"seed{seed}"

    def runs(self) -> list[Run]:
        return [Run(g, s, self.folder(g, s)) for g, s in itertools.product(self.game_ids, self.seeds)]

    def blocks(self) -> list[tuple[list[str], list[int]]]:
        """The unfinished runs as few (env ids × seeds) products, one multirun each: games whose
        unfinished seeds are the same go together."""
        by_game: dict[str, tuple[int, ...]] = {}
        for run in self.runs():
            if run.state() != "finished":
                by_game[run.game_id] = by_game.get(run.game_id, ()) + (run.seed,)
        groups: dict[tuple[int, ...], list[str]] = {}
        for game_id, seeds in by_game.items():
            groups.setdefault(seeds, []).append(game_id)
        return [(game_ids, list(seeds)) for seeds, game_ids in groups.items()]

    def command(self, game_ids: list[str], seeds: list[int]) -> list[str]:
        return [sys.executable, str(TRAIN_SCRIPT), "-m", f"env={self.env}", f"params={self.params}",
                f"env.train.id={','.join(game_ids)}", f"params.common.seed={','.join(map(str, seeds))}",
                "params.common.resume=auto", f"hydra.sweep.dir={self.sweep_dir}", f"hydra.sweep.subdir={SUBDIR}",
                *self.overrides]

    def status(self) -> str:
        """One line per run (state, last logged epoch, final score) and the counts."""
        lines, counts = [], {"finished": 0, "started": 0, "new": 0}
        for run in self.runs():
            state, result = run.state(), run.result()
            counts[state] += 1
            detail = f"score {result['score']:.2f}" if result else f"epoch {last_epoch(run.folder) or 0}"
            lines.append(f"  {run.game_id:28s} seed {run.seed:<3d} {state:9s} {detail}")
        lines.append(", ".join(f"{n} {state}" for state, n in counts.items()) + f" (of {len(self.runs())} runs)")
        return "\n".join(lines)

    def launch(self, dry_run: bool = False) -> None:
        """Runs every unfinished run, one Hydra multirun per block; a failed multirun does not stop the
        next one (its runs stay unfinished and are reported)."""
        env = {**os.environ, "WANDB_SILENT": "true"}
        blocks = self.blocks()
        for i, (game_ids, seeds) in enumerate(blocks, 1):
            cmd = self.command(game_ids, seeds)
            print(f"[multirun {i}/{len(blocks)}] {len(game_ids) * len(seeds)} runs: {shlex.join(cmd)}", flush=True)
            if not dry_run:
                code = subprocess.run(cmd, cwd=ROOT, env=env).returncode
                if code != 0:
                    print(f"the multirun exited with status {code}; its unfinished runs are listed below",
                          file=sys.stderr, flush=True)

    def results(self) -> list[dict]:
        """The results of the finished runs, each checked against its folder."""
        records = []
        for run in self.runs():
            result = run.result()
            if result is None:
                continue
            if game_name(str(result["game"])) != game_name(run.game_id) or result["seed"] != run.seed:
                raise SweepError(f"{run.folder / RESULTS_FILE}: holds game {result['game']!r} seed "
                                 f"{result['seed']!r}, expected {run.game_id!r} seed {run.seed}")
            records.append(result)
        return records


def launcher_overrides(launcher: str, jobs: int | None) -> list[str]:
    """Hydra overrides selecting ``launcher`` (``basic`` is Hydra's default) and its parallelism."""
    if jobs is not None and launcher != "joblib":
        raise SweepError(f"--jobs {jobs} needs --launcher joblib (got --launcher {launcher}); set a SLURM "
                         "launcher's parallelism with hydra.launcher.array_parallelism=N")
    if jobs is not None and jobs < 1:
        raise SweepError(f"--jobs must be at least 1, got {jobs}")
    if launcher == "basic":
        return []
    return [f"hydra/launcher={launcher}"] + ([f"hydra.launcher.n_jobs={jobs}"] if jobs is not None else [])


def add_sweep_arguments(parser: argparse.ArgumentParser, default_dir: str, default_seeds: int) -> None:
    """The options atari100k.py and crafter_benchmark.py share."""
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Hydra overrides, passed as they are")
    parser.add_argument("--seeds", type=int, default=default_seeds, help="seeds 0..S-1 (default %(default)s)")
    parser.add_argument("--first-seed", type=int, default=0, help="start the seeds here (default 0)")
    parser.add_argument("--sweep-dir", default=None, help=f"the sweep's folder (default {default_dir}, "
                        f"{default_dir}_smoke with --smoke)")
    parser.add_argument("--launcher", default="basic", help="Hydra launcher: basic (one after another), "
                        "joblib, submitit_slurm, submitit_local, slurm_gpu (configs/hydra/launcher)")
    parser.add_argument("--jobs", type=int, default=None, help="runs at a time with --launcher joblib")
    parser.add_argument("--smoke", action="store_true", help="params=smoke, 1 seed, wandb off: CPU, minutes")
    parser.add_argument("--status", action="store_true", help="print the runs' states and exit")
    parser.add_argument("--dry-run", action="store_true", help="print the Hydra commands without running them")


def build_sweep(args: argparse.Namespace, env: str, params: str, game_ids: list[str], default_dir: str,
                smoke_overrides: tuple[str, ...]) -> Sweep:
    if args.seeds < 1:
        raise SweepError(f"--seeds must be at least 1, got {args.seeds}")
    if bad := [o for o in args.overrides if "=" not in o]:
        raise SweepError(f"expected Hydra overrides KEY=VALUE, got {bad}")
    seeds = list(range(args.first_seed, args.first_seed + (1 if args.smoke else args.seeds)))
    sweep_dir = Path(args.sweep_dir or (f"{default_dir}_smoke" if args.smoke else default_dir)).resolve()
    overrides = launcher_overrides(args.launcher, args.jobs) + list(smoke_overrides if args.smoke else ())
    return Sweep(sweep_dir, env, "smoke" if args.smoke else params, game_ids, seeds, overrides + args.overrides)


def run_sweep(sweep: Sweep, args: argparse.Namespace) -> bool:
    """Status, launch of the unfinished runs, status again; True when every run is finished."""
    print(f"sweep {sweep.sweep_dir}: {len(sweep.game_ids)} envs × {len(sweep.seeds)} seeds", flush=True)
    print(sweep.status(), flush=True)
    if args.status or not sweep.blocks():
        return not sweep.blocks()
    sweep.launch(dry_run=args.dry_run)
    if args.dry_run:
        return False
    print(sweep.status(), flush=True)
    if left := sweep.blocks():
        print(f"{sum(len(g) * len(s) for g, s in left)} runs unfinished: run the same command again to "
              "resume them", file=sys.stderr)
    return not left
