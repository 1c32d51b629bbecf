"""Atari 100k: the 26 games × S seeds with the reference's schedule, launched by Hydra, then aggregated.

    python benchmarks/atari100k.py                                # 26 games × 5 seeds, one run after another
    python benchmarks/atari100k.py --launcher joblib --jobs 4     # 4 runs at a time on this machine
    python benchmarks/atari100k.py --launcher slurm_gpu hydra.launcher.partition=gpu   # a SLURM job per run
    python benchmarks/atari100k.py --games Pong Breakout --seeds 3 --sweep-dir runs/a100k
    python benchmarks/atari100k.py --status                       # what is finished, started, not started
    python benchmarks/atari100k.py --smoke                        # 2 games, 1 seed, tiny models, CPU (CI)
    python benchmarks/atari100k.py --params atari_cpu --games Breakout KungFuMaster --seeds 3 --report  # laptop

``--params`` picks the preset of every run (``atari_cpu``: the laptop preset, ~1 h a run on 2 CPU cores;
its sweeps go to ``outputs/atari100k_atari_cpu`` by default); a preset with an env file of its own name
(``configs/env/atari_cpu.yaml``: 32x32 frames) runs with that env, any other with ``env=atari``.
``--report`` writes ``<sweep-dir>/report``: per-seed learning curves (``curves.png``) and a table
(``table.md``) against a uniform random policy run through the same test protocol, finished runs or
not (``sweep_report.py``).

Every run is ``train.py env=atari params=atari env.train.id=<game> params.common.seed=<seed>`` (the
reference's Atari schedule: 600 epochs, 100k agent steps) in its own folder
``<sweep-dir>/<GameNoFrameskip-v4>/seed<seed>``, launched as one Hydra multirun::

    python train.py -m env=atari params=atari env.train.id=A,B params.common.seed=0,1 \\
        params.common.resume=auto hydra.sweep.dir=DIR 'hydra.sweep.subdir=${env.train.id}/seed${params.common.seed}'

(``--dry-run`` prints it.) ``--launcher`` picks Hydra's launcher: ``basic`` runs the jobs one after
another, ``joblib`` ``--jobs`` at a time, ``submitit_slurm`` (or ``slurm_gpu``, ``configs/hydra/launcher/``:
1 GPU, 8 CPUs, 24 h, requeued on timeout) one SLURM job each; arguments of the form ``key=value`` are
passed to Hydra as they are (``hydra.launcher.partition=gpu``, ``params.common.device=cuda``, ...).

A finished run has ``results.json`` in its folder (its final test score); ``train.py`` writes it
atomically after the last epoch. Running the same command again launches only the unfinished runs:
``params.common.resume=auto`` resumes each from its last checkpoint, so a crashed run (or a SLURM job
that timed out) continues where it stopped and is counted once. When every run is finished, the
scores are aggregated with ``benchmarks/aggregate.py`` beside the published Δ-IRIS, IRIS and DIAMOND
ones (``<sweep-dir>/aggregate/``: table, CSV, JSON, plots) unless ``--no-aggregate``. Exit status 0
when every run is finished, 1 when some are not, 2 on a usage error.

The sweep machinery (:class:`Sweep`) is shared with ``benchmarks/crafter_benchmark.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import the sibling scripts as the benchmarks package
    sys.path[0] = str(Path(__file__).resolve().parents[1])
from benchmarks import aggregate as agg
from benchmarks import sweep_report as report_lib
from benchmarks.score_inputs import AggregateError, game_name, merge_runs, read_inputs
from benchmarks.sweep import Sweep, SweepError, add_sweep_arguments, build_sweep, run_sweep

ROOT = Path(__file__).resolve().parents[1]
AGENT = "torchrl_deltairis"
SMOKE_GAMES = ("Pong", "Breakout")
# Smoke budget: 2 epochs (random collection, then one of everything), one evaluation, at the last epoch,
# whose 2 test episodes are cut at 250 agent steps (a near-random Pong episode lasts ~950).
SMOKE_OVERRIDES = ("params.common.epochs=2", "params.evaluation.every=2", "env.test.max_episode_steps=1000",
                   "wandb.mode=disabled")


def aggregate_results(records: list[dict], games: list[str], out: Path, reps: int, profile_reps: int) -> dict:
    """Our runs beside the published Δ-IRIS, IRIS and DIAMOND scores (aggregate.py), on ``games``."""
    tables = merge_runs([{**r, "agent": AGENT} for r in records])
    specs = [str(agg.REFERENCE_DIR / f"{a}.json") for a in agg.DEFAULT_AGENTS]
    tables |= read_inputs(specs)
    args = agg.parse_args(["--games", *games, "--baseline", "DeltaIRIS", "--out", str(out), "--reps", str(reps),
                           "--profile-reps", str(profile_reps)])
    results = agg.aggregate_tables(tables, args, [AGENT, *specs])
    print(agg.format_table(results))
    lines = [f"  {'game':16s} {'ours':>10s} {'Δ-IRIS':>10s}   (mean score over runs)"]
    for game in games:
        ours, ref = (results["per_game"][a][game]["mean_score"] for a in (AGENT, "DeltaIRIS"))
        lines.append(f"  {game:16s} {ours:10.1f} {ref:10.1f}")
    print("\n".join(lines) + f"\naggregates written to {out}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_sweep_arguments(parser, "outputs/atari100k", 5)
    parser.add_argument("--games", nargs="+", default=None, help="games (default: the 26 of Atari 100k; "
                        "Pong Breakout with --smoke)")
    parser.add_argument("--no-aggregate", action="store_true", help="do not aggregate the finished sweep")
    parser.add_argument("--reps", type=int, default=None, help="bootstrap replicates (default 50,000; 500 smoke)")
    parser.add_argument("--params", default="atari", help="the params preset of every run (default %(default)s; "
                        "atari_cpu: the laptop preset)")
    parser.add_argument("--report", action="store_true", help="write <sweep-dir>/report: per-seed learning curves "
                        "(PNG) and a table against a random policy run through the same test protocol")
    args = parser.parse_args(argv)
    try:
        names = args.games or list(SMOKE_GAMES if args.smoke else atari100k_games())
        game_ids = [resolve_game(name) for name in names]
        default_dir = "outputs/atari100k" if args.params == "atari" else f"outputs/atari100k_{args.params}"
        env = env_of("smoke" if args.smoke else args.params)
        sweep = build_sweep(args, env, args.params, game_ids, default_dir, SMOKE_OVERRIDES)
        finished = run_sweep(sweep, args)
        if args.report and not args.dry_run:
            write_report(sweep)
        if finished and not (args.no_aggregate or args.status or args.dry_run):
            reps = args.reps or (500 if args.smoke else 50_000)
            aggregate_results(sweep.results(), [game_name(g) for g in game_ids], sweep.sweep_dir / "aggregate",
                              reps, min(reps, 2_000))
    except (SweepError, AggregateError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0 if finished else 1


def env_of(params: str) -> str:
    """The env group a preset runs with: its own (``configs/env/<params>.yaml``, e.g. ``atari_cpu``'s 32x32
    frames) when it has one, else ``atari``."""
    return params if (ROOT / "configs" / "env" / f"{params}.yaml").exists() else "atari"


def write_report(sweep: Sweep) -> None:
    """Learning curves and the table against the random baseline (sweep_report.py), finished or not."""
    from torchrl_deltairis.config import RunConfig

    cfg = compose_run_config(sweep)
    env_cfg = dict(cfg["env"]["test"])  # as a mapping: each game's id goes in its place
    num_episodes = RunConfig.from_hydra(cfg).collection.test.config.num_episodes
    seeds = sorted(set(sweep.seeds) | {0, 1, 2})  # a spread needs a few seeds, however few the sweep has
    baselines = {g: report_lib.random_baseline(sweep.sweep_dir, g, {**env_cfg, "id": g}, num_episodes, seeds)
                 for g in sweep.game_ids}
    runs = [(r.game_id, r.seed, r.folder, (r.result() or {}).get("score")) for r in sweep.runs()]
    rows = report_lib.report(sweep.sweep_dir, runs, baselines)
    print(report_lib.format_table(rows, baselines))
    print(f"curves and table written to {sweep.sweep_dir / 'report'}", flush=True)


def compose_run_config(sweep: Sweep) -> dict:
    """The runs' resolved config (their game aside), as train.py composes it with the sweep's overrides."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from torchrl_deltairis.config_resolvers import register_resolvers

    register_resolvers()  # the configs' ${eval:...} links (the package registers it on import, too)
    hydra_keys = ("hydra", "hydra/")
    overrides = [o for o in sweep.overrides if not o.startswith(hydra_keys)]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
        cfg = compose("config", overrides=[f"env={sweep.env}", f"params={sweep.params}",
                                           f"env.train.id={sweep.game_ids[0]}", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


def atari100k_games() -> list[str]:
    """The 26 games, in the order of the human-score table (the package's list without importing torch)."""
    return list(json.loads((agg.REFERENCE_DIR / "HUMAN.json").read_text()))


def resolve_game(name: str) -> str:
    """``Pong`` / ``pong`` / ``PongNoFrameskip-v4`` → ``PongNoFrameskip-v4`` (one of the 26 games)."""
    games = atari100k_games()
    game = {g.lower(): g for g in games}.get(game_name(name).lower())
    if game is None:
        raise SweepError(f"unknown Atari 100k game {name!r}; expected one of {', '.join(games)}")
    return f"{game}NoFrameskip-v4"


if __name__ == "__main__":
    sys.exit(main())
