"""Aggregate Atari 100k results: human-normalised scores, rliable intervals, improvement odds, plots.

    python benchmarks/aggregate.py                              # the shipped DeltaIRIS, IRIS, DIAMOND
    python benchmarks/aggregate.py benchmarks/reference_results runs/ --baseline DeltaIRIS --out agg
    python benchmarks/aggregate.py ours=runs/ benchmarks/reference_results/IRIS.json --baseline IRIS
    python benchmarks/aggregate.py runs/ --games Pong Breakout --reps 2000   # a subset (smoke runs)

Inputs (positional; none = the three agents in ``benchmarks/reference_results``). Each is a JSON file or
a folder (searched recursively for ``*.json``; ``HUMAN.json``/``RANDOM.json`` there are skipped), and
``NAME=PATH`` renames every agent read from PATH to NAME. A JSON file is either

* an agent table, the format of ``benchmarks/reference_results``: ``{"Alien": [694, 607, ...], ...}``,
  game → list of final scores, one per run; the agent is named after the file (``IRIS.json`` → IRIS);
* a run record, one finished run: ``{"agent": "ours", "game": "Breakout", "seed": 0, "score": 312.5}``
  (other keys are ignored; ``game`` may be a gym id, ``BreakoutNoFrameskip-v4`` or ``ALE/Breakout-v5``),
  or a list of such records. Records are merged into agent tables (scores ordered by seed); the same
  (agent, game, seed) twice is an error, so a resumed run must overwrite its file, not add one. One
  agent's records must come through one input (their common folder), else it is "given twice".

Training run folders (``train.py``'s, e.g. a ``benchmarks/atari100k.py`` sweep) can be given as they
are: in a folder, every ``results.json`` is a run record (the one ``train.py`` writes when a run
finishes; records of non-Atari runs, ``"family": "crafter"`` or ``"gym"``, are left out), and the other
JSON files inside a run folder (one holding ``results.json``, ``config/trainer.yaml`` or ``.hydra/``:
wandb files, dataset commits) are not read. Elsewhere in a folder, JSON files that are neither agent
tables nor run records are skipped with a note on stderr; a file named on the command line must be one.

Each agent needs every game of ``--games`` (default: the 26 games of the human table) with at least one
run and the same number of runs on each game; games outside the tables are errors, and the messages
list the offending games. ``--human``/``--random`` replace the normalisation tables.

Metrics, on the human-normalised score HNS = (score − random)/(human − random), as a [runs, games]
matrix per agent given to rliable: mean and median over the per-game means (``metrics.aggregate_mean``,
``aggregate_median``), IQM and optimality gap (γ = 1) over all runs (``aggregate_iqm``,
``aggregate_optimality_gap``), with 95 % percentile stratified-bootstrap CIs
(``library.get_interval_estimates``, ``--reps``, default 50,000 as in the rliable papers). The
probability that each agent beats ``--baseline`` (default: the first agent) is rliable's definition
(per-game Mann-Whitney U / (n·m), ties counting ½, averaged over games) with an independent stratified
bootstrap CI, computed by our vectorised :func:`probability_of_improvement` because rliable's
per-game ``scipy.stats.mannwhitneyu`` loop takes ~18 ms a replicate (15 minutes per agent at 50,000
reps); ``tests/test_aggregate.py`` checks both agree. Performance profiles (fraction of runs with HNS > τ,
τ ∈ [0, 8]) use ``library.create_performance_profile`` with ``--profile-reps`` (default 2,000, rliable's).
Bootstraps are seeded per agent (``--seed``), so adding an agent does not change another's CI.

Outputs in ``--out``: ``aggregates.json`` (all of it), ``aggregates.csv`` (agent, metric, value,
ci_low, ci_high), ``per_game.csv`` (game, agent, runs, mean score, HNS), ``aggregate_intervals.png``
and ``performance_profile.png``; the table is printed. With the defaults, three agents take about a
minute on two CPU cores (``--reps 2000`` a few seconds).
"""

import argparse
import contextlib
import csv
import json
import sys
from pathlib import Path
from typing import Iterator

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from rliable import library, metrics, plot_utils  # noqa: E402

if __package__ in (None, ""):  # run as a file: import the sibling scripts as the benchmarks package
    sys.path[0] = str(Path(__file__).resolve().parents[1])
from benchmarks.score_inputs import AggregateError, Table, game_name, read_inputs, validate  # noqa: E402

REFERENCE_DIR = Path(__file__).resolve().parent / "reference_results"
DEFAULT_AGENTS = ("DeltaIRIS", "IRIS", "DIAMOND")
METRICS = ("mean", "median", "iqm", "optimality_gap")
TAUS = np.linspace(0.0, 8.0, 81)


def normalise(table: Table, games: list[str], human: Table, random: Table) -> np.ndarray:
    """Human-normalised scores as a [runs, games] matrix."""
    cols = [(np.asarray(table[g], float) - random[g][0]) / (human[g][0] - random[g][0]) for g in games]
    return np.stack(cols, axis=1)


def aggregates(hns: np.ndarray) -> np.ndarray:
    """[mean, median, IQM, optimality gap] of a [runs, games] HNS matrix (rliable's metrics)."""
    return np.array([metrics.aggregate_mean(hns), metrics.aggregate_median(hns),
                     metrics.aggregate_iqm(hns), metrics.aggregate_optimality_gap(hns)])


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y): per game the fraction of run pairs with x > y (ties ½), averaged over games."""
    diff = x[:, None, :] - y[None, :, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean(axis=(0, 1)).mean())


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """rliable's bootstraps draw from NumPy's global generator: seed it, then restore it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _interval(point: np.ndarray, ci: np.ndarray, i: int) -> dict[str, float]:
    return {"value": float(np.ravel(point)[i]), "ci_low": float(ci[0, i]), "ci_high": float(ci[1, i])}


def compute(scores: dict[str, np.ndarray], baseline: str, reps: int, profile_reps: int, seed: int) -> dict:
    """Aggregates, probability of improvement and performance profiles with their 95 % CIs."""
    profiles: dict = {"tau": TAUS.tolist()}
    out: dict = {"aggregates": {}, "probability_of_improvement": {}, "performance_profile": profiles}
    for agent, hns in scores.items():
        with seeded(seed):
            point, ci = library.get_interval_estimates({agent: hns}, aggregates, reps=reps)
        out["aggregates"][agent] = {m: _interval(point[agent], ci[agent], i) for i, m in enumerate(METRICS)}
        with seeded(seed):
            pair = {agent: [hns, scores[baseline]]}
            point, ci = library.get_interval_estimates(pair, probability_of_improvement, reps=reps)
        poi = _interval(point[agent], ci[agent], 0)
        out["probability_of_improvement"][agent] = {"baseline": baseline, **poi}
        with seeded(seed):
            prof, prof_ci = library.create_performance_profile({agent: hns}, TAUS, reps=profile_reps)
        low, high = prof_ci[agent]
        profiles[agent] = {"value": prof[agent].tolist(), "ci_low": low.tolist(), "ci_high": high.tolist()}
    return out


def per_game(tables: dict[str, Table], scores: dict[str, np.ndarray], games: list[str]) -> dict:
    return {agent: {g: {"runs": len(tables[agent][g]), "mean_score": float(np.mean(tables[agent][g])),
                        "human_normalised": float(scores[agent][:, j].mean())} for j, g in enumerate(games)}
            for agent in tables}


def format_table(results: dict) -> str:
    baseline = results["settings"]["baseline"]
    heads = ["agent", "mean", "median", "IQM", "optimality gap", f"P(agent > {baseline})"]
    rows = []
    for agent, aggs in results["aggregates"].items():
        cells = [aggs[m] for m in METRICS] + [results["probability_of_improvement"][agent]]
        rows.append([agent] + [f"{c['value']:.3f} [{c['ci_low']:.3f}, {c['ci_high']:.3f}]" for c in cells])
    widths = [max(len(r[i]) for r in [heads] + rows) for i in range(len(heads))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [heads] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    s = results["settings"]
    return "\n".join(lines + [f"(human-normalised, {len(s['games'])} games, 95 % stratified bootstrap CIs, "
                              f"{s['reps']} reps, seed {s['seed']})"])


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])


def write_outputs(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "aggregates.json").write_text(json.dumps(results, indent=2))
    poi = results["probability_of_improvement"]
    _write_csv(out / "aggregates.csv", ["agent", "metric", "value", "ci_low", "ci_high"], [
        [agent, metric, c["value"], c["ci_low"], c["ci_high"]]
        for agent, aggs in results["aggregates"].items()
        for metric, c in [*aggs.items(), (f"P(agent > {poi[agent]['baseline']})", poi[agent])]])
    _write_csv(out / "per_game.csv", ["game", "agent", "runs", "mean_score", "human_normalised"], [
        [game, agent, r["runs"], r["mean_score"], r["human_normalised"]]
        for agent, by_game in results["per_game"].items() for game, r in by_game.items()])


def plot(results: dict, out: Path) -> None:
    """``aggregate_intervals.png`` and ``performance_profile.png`` with rliable's plotting helpers."""
    aggs = results["aggregates"]
    point = {a: np.array([aggs[a][m]["value"] for m in METRICS]) for a in aggs}
    ci = {a: np.array([[aggs[a][m][k] for m in METRICS] for k in ("ci_low", "ci_high")]) for a in aggs}
    fig, _ = plot_utils.plot_interval_estimates(point, ci, ["Mean", "Median", "IQM", "Optimality Gap"],
                                                xlabel="Human Normalized Score", row_height=0.6,
                                                xlabel_y_coordinate=-0.05 - 0.6 / len(aggs))
    fig.savefig(out / "aggregate_intervals.png", bbox_inches="tight", dpi=120)
    plt.close(fig)
    prof = {a: v for a, v in results["performance_profile"].items() if a != "tau"}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plot_utils.plot_performance_profiles(
        {a: np.array(p["value"]) for a, p in prof.items()}, TAUS, ax=ax,
        performance_profile_cis={a: (np.array(p["ci_low"]), np.array(p["ci_high"])) for a, p in prof.items()},
        xlabel=r"Human Normalized Score ($\tau$)")
    ax.legend(loc="upper right")
    fig.savefig(out / "performance_profile.png", bbox_inches="tight", dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> dict:
    """Read, check, normalise, aggregate, write; returns the results written to ``aggregates.json``."""
    specs = args.inputs or [str(REFERENCE_DIR / f"{a}.json") for a in DEFAULT_AGENTS]
    return aggregate_tables(read_inputs(specs), args, specs)


def aggregate_tables(tables: dict[str, Table], args: argparse.Namespace, specs: list[str]) -> dict:
    """Check, normalise, aggregate and write agent tables already read (``specs`` is only recorded);
    ``args`` as :func:`parse_args` gives them (its ``inputs`` are not read)."""
    human, random = (json.loads(Path(p).read_text()) for p in (args.human, args.random))
    if not tables:
        raise AggregateError(f"no results found in {specs}")
    games = [game_name(g) for g in args.games] if args.games else list(human)
    if unknown := sorted(set(games) - set(human) - set(random)):
        raise AggregateError(f"--games: unknown games {unknown}")
    validate(tables, games, set(human) & set(random))
    baseline = args.baseline or next(iter(tables))
    if baseline not in tables:
        raise AggregateError(f"unknown baseline {baseline!r}; agents: {list(tables)}")
    scores = {a: normalise(t, games, human, random) for a, t in tables.items()}
    results = {"settings": {"inputs": specs, "games": games, "baseline": baseline, "reps": args.reps,
                            "profile_reps": args.profile_reps, "seed": args.seed, "confidence": 0.95}}
    results |= compute(scores, baseline, args.reps, args.profile_reps, args.seed)
    results["per_game"] = per_game(tables, scores, games)
    out = Path(args.out)
    write_outputs(results, out)
    if not args.no_plots:
        plot(results, out)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", help="[NAME=]PATH of agent tables, run records or folders of them")
    p.add_argument("--baseline", help="agent to compare against (default: the first agent)")
    p.add_argument("--out", default="outputs/aggregate", help="folder for the JSON, CSV and PNG files")
    p.add_argument("--games", nargs="+", help="aggregate over these games only (default: all 26)")
    p.add_argument("--reps", type=int, default=50_000, help="bootstrap replicates for the aggregates")
    p.add_argument("--profile-reps", type=int, default=2_000, help="bootstrap replicates for the profiles")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--human", default=str(REFERENCE_DIR / "HUMAN.json"))
    p.add_argument("--random", default=str(REFERENCE_DIR / "RANDOM.json"))
    p.add_argument("--no-plots", action="store_true", help="skip the PNG files")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    try:
        results = run(parse_args(argv))
    except AggregateError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
