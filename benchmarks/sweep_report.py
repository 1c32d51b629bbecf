"""What a small Atari sweep learned: per-seed learning curves (PNG), a table, and the random baseline.

    python benchmarks/sweep_report.py --random Boxing Breakout --seeds 3      # the random baseline alone
    python benchmarks/sweep_report.py --probe Breakout                        # which single action pays

``benchmarks/atari100k.py --report`` calls it on a sweep's folder (``--params atari_cpu`` sweeps are the
intended use: a few games, a few seeds, on a laptop). For every game it

* runs a **uniform random policy through the same test protocol** as the runs' final evaluation: the
  preset's test env (``env.test``: one no-op at most at reset, whole games, no life-loss ends) and its
  number of test episodes (``params.collection.test.config.num_episodes``), once per seed, with the
  seed's own episodes (:func:`random_baseline`; cached in ``<sweep>/random/<Game>.json``);
* reads each run's ``metrics.csv``: the test score (mean return of its test episodes) at every
  evaluation, against the real env steps collected so far;
* writes ``<sweep>/report/curves.png`` (one panel per game: a line per seed, the random policy's mean
  and its spread as a band) and ``<sweep>/report/table.md`` / ``table.json``.

A run **beats random** when its final test score exceeds the random policy's mean by more than the
random policy's spread, taken as the larger of (a) the standard deviation of the random policy's
per-episode returns and (b) that of its per-seed test scores (a test score is a mean over the same
number of episodes, so (b) is the spread of the very statistic compared; (a) is the stricter bar).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

TEST_SCORE = "collection/test/return_mean"
STEPS = "collection/train/steps"


@dataclass
class RandomBaseline:
    """The uniform random policy's test scores on one game: ``returns[seed]`` lists its episodes'."""

    game_id: str
    num_episodes: int
    returns: dict[int, list[float]]

    @property
    def episodes(self) -> list[float]:
        return [r for seed in sorted(self.returns) for r in self.returns[seed]]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.episodes)

    @property
    def seed_scores(self) -> list[float]:
        return [statistics.fmean(self.returns[s]) for s in sorted(self.returns)]

    @property
    def spread(self) -> float:
        """The larger of the per-episode and the per-seed-score standard deviations (module docstring)."""
        per_episode = statistics.pstdev(self.episodes)
        per_seed = statistics.stdev(self.seed_scores) if len(self.returns) > 1 else 0.0
        return max(per_episode, per_seed)

    @property
    def bar(self) -> float:
        return self.mean + self.spread


def play(env_cfg: dict, num_episodes: int, seed: int, choose, rng: np.random.Generator | None = None) -> list[float]:
    """Returns of ``num_episodes`` episodes of the Atari env ``env_cfg`` whose actions ``choose(rng, n)``
    draws (n: the number of actions) from ``rng`` (default: a generator seeded with ``seed``); episode i
    resets with a seed of its own, so the no-op starts follow ``seed`` too."""
    from torchrl_deltairis.envs.atari import AtariConfig, make_atari_gymnasium

    env = make_atari_gymnasium(AtariConfig(**env_cfg))
    rng, n = rng if rng is not None else np.random.default_rng(seed), int(env.action_space.n)
    returns = []
    try:
        for episode in range(num_episodes):
            env.reset(seed=seed * 100_003 + episode)
            total, done = 0.0, False
            while not done:
                _, reward, terminated, truncated, _ = env.step(int(choose(rng, n)))
                total, done = total + float(reward), terminated or truncated
            returns.append(total)
    finally:
        env.close()
    return returns


def random_returns(env_cfg: dict, num_episodes: int, seed: int) -> list[float]:
    """``num_episodes`` returns of a uniform random policy on the Atari env ``env_cfg`` (a test env
    config), its actions and the env's no-op starts drawn from ``seed``."""
    return play(env_cfg, num_episodes, seed, lambda rng, n: rng.integers(n))


def random_baseline(sweep_dir: Path, game_id: str, env_cfg: dict, num_episodes: int,
                    seeds: list[int]) -> RandomBaseline:
    """The random policy's returns on ``game_id`` for ``seeds``, computed once and kept in
    ``<sweep_dir>/random/<game_id>.json`` (seeds or an episode count it lacks are run and added)."""
    path = sweep_dir / "random" / f"{game_id}.json"
    cached = json.loads(path.read_text()) if path.exists() else {}
    if cached.get("num_episodes") != num_episodes or cached.get("env") != env_cfg:
        cached = {}
    returns = {int(s): r for s, r in cached.get("returns", {}).items()}
    for seed in seeds:
        if seed not in returns:
            print(f"random policy on {game_id}, seed {seed}: {num_episodes} test episodes", flush=True)
            returns[seed] = random_returns(env_cfg, num_episodes, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"game": game_id, "num_episodes": num_episodes, "env": env_cfg,
              "returns": {str(s): returns[s] for s in sorted(returns)}}
    path.write_text(json.dumps(record, indent=1))
    return RandomBaseline(game_id, num_episodes, {s: returns[s] for s in seeds})


def probe_actions(env_cfg: dict, episodes: int = 2, share: float = 0.75, seed: int = 0) -> dict[str, float]:
    """Mean return of each "mostly one action" policy (that action with probability ``share``, else a
    uniform random one) over ``episodes`` episodes, by action name: is there an easy policy to find?"""
    from torchrl_deltairis.envs.atari import AtariConfig, make_atari_gymnasium

    probe = make_atari_gymnasium(AtariConfig(**env_cfg))
    names = probe.unwrapped.get_action_meanings()
    probe.close()
    rng = np.random.default_rng(seed)  # one generator through every action's episodes
    return {name: statistics.fmean(play(env_cfg, episodes, seed,
                                        lambda g, n, a=action: a if g.random() < share else g.integers(n), rng))
            for action, name in enumerate(names)}


def learning_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(real env steps so far, test score) at each evaluation of the run's ``metrics.csv``."""
    path = run_dir / "metrics.csv"
    if not path.exists():
        return []
    curve, steps = [], 0.0
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            steps += float(row.get(STEPS) or 0.0)
            if row.get(TEST_SCORE):
                curve.append((int(steps), float(row[TEST_SCORE])))
    return curve


@dataclass
class RunRow:
    game: str
    seed: int
    curve: list[tuple[int, float]]
    final: float | None  # results.json's score (None: the run is not finished)
    random_mean: float
    random_spread: float

    @property
    def beats_random(self) -> bool | None:
        return None if self.final is None else self.final > self.random_mean + self.random_spread


def report(sweep_dir: Path, runs: list[tuple[str, int, Path, float | None]],
           baselines: dict[str, RandomBaseline]) -> list[RunRow]:
    """Writes ``<sweep_dir>/report/{curves.png,table.md,table.json}``; ``runs`` lists (game id, seed,
    run folder, final score or None)."""
    rows = [RunRow(game, seed, learning_curve(folder), final, baselines[game].mean, baselines[game].spread)
            for game, seed, folder, final in runs]
    out = sweep_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    plot_curves(rows, baselines, out / "curves.png")
    (out / "table.md").write_text(format_table(rows, baselines) + "\n")
    (out / "table.json").write_text(json.dumps(
        {"runs": [asdict(r) | {"beats_random": r.beats_random} for r in rows],
         "random": {g: asdict(b) | {"mean": b.mean, "spread": b.spread} for g, b in baselines.items()}}, indent=1))
    return rows


def format_table(rows: list[RunRow], baselines: dict[str, RandomBaseline]) -> str:
    lines = ["| game | seed | test score per evaluation (env steps) | final | random: mean ± spread | beats random |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        curve = ", ".join(f"{score:.1f} ({steps // 1000}k)" for steps, score in r.curve) or "-"
        final = "-" if r.final is None else f"{r.final:.1f}"
        verdict = {None: "not finished", True: "yes", False: "no"}[r.beats_random]
        lines.append(f"| {short(r.game)} | {r.seed} | {curve} | {final} | {r.random_mean:.1f} ± {r.random_spread:.1f} "
                     f"| {verdict} |")
    for game, b in baselines.items():
        lines.append(f"\nrandom policy on {short(game)}: {len(b.returns)} seeds × {b.num_episodes} episodes, mean "
                     f"{b.mean:.2f}, per-episode sd {statistics.pstdev(b.episodes):.2f}, per-seed scores "
                     + ", ".join(f"{s:.2f}" for s in b.seed_scores))
    return "\n".join(lines)


def plot_curves(rows: list[RunRow], baselines: dict[str, RandomBaseline], path: Path) -> None:
    games = list(dict.fromkeys(r.game for r in rows))
    fig, axes = plt.subplots(1, len(games), figsize=(4.5 * len(games), 3.5), squeeze=False)
    for ax, game in zip(axes[0], games):
        b = baselines[game]
        ax.axhline(b.mean, color="grey", lw=1, label="random policy")
        ax.axhspan(b.mean - b.spread, b.mean + b.spread, color="grey", alpha=0.2)
        for r in (r for r in rows if r.game == game):
            if r.curve:
                ax.plot(*zip(*r.curve), marker="o", label=f"seed {r.seed}")
        ax.set_title(short(game))
        ax.set_xlabel("real env steps")
        ax.set_ylabel("test score")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def short(game_id: str) -> str:
    return game_id.removesuffix("NoFrameskip-v4")


# the test protocol of env/atari.yaml (whole games, at most one no-op at reset); the frame size does not
# change what a policy that ignores the frames scores
TEST_ENV = {"family": "atari", "size": 32, "max_episode_steps": 108_000, "noop_max": 1, "frame_skip": 4,
            "done_on_life_loss": False, "clip_reward": False, "repeat_action_probability": 0.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--random", nargs="+", default=[], metavar="GAME", help="the random baseline of these games")
    parser.add_argument("--probe", nargs="+", default=[], metavar="GAME",
                        help="each mostly-one-action policy's return")
    parser.add_argument("--seeds", type=int, default=3, help="random baseline: seeds 0..S-1 (default %(default)s)")
    parser.add_argument("--episodes", type=int, default=16,
                        help="random baseline: episodes a seed (default %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("outputs/random_baselines"), help="the baselines' cache")
    args = parser.parse_args(argv)
    from torchrl_deltairis.envs.atari import resolve_atari_id

    for game in args.random:
        game_id = resolve_atari_id(game)
        b = random_baseline(args.out, game_id, {**TEST_ENV, "id": game_id}, args.episodes, list(range(args.seeds)))
        print(f"{short(game_id)}: mean {b.mean:.2f}, per-episode sd {statistics.pstdev(b.episodes):.2f}, per-seed "
              f"scores {', '.join(f'{x:.2f}' for x in b.seed_scores)}, spread {b.spread:.2f}, bar {b.bar:.2f}",
              flush=True)
    for game in args.probe:
        scores = probe_actions({**TEST_ENV, "id": resolve_atari_id(game)})
        best = sorted(scores.items(), key=lambda kv: -kv[1])
        print(f"{game}: " + ", ".join(f"{name} {score:.1f}" for name, score in best), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
