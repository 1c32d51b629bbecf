"""Environment frames per second: plain env stepping vs the TorchRL collector writing into the store.

    python benchmarks/collect.py                       # Crafter x 16 envs and Atari (Breakout) x 1
    python benchmarks/collect.py --steps 4000 --json results/collect.json

"Plain" steps the gymnasium envs (with the same preprocessing) in a Python loop in one process with
random actions: the cost of the environments alone. "Collector" is what training does: a batched
TorchRL env (``ParallelEnv`` for several envs), a random ``ExplorationPolicy`` (the first epoch), a
stock ``Collector``, and every batch appended to an ``EpisodeStore`` on disk. Frames are agent steps
(for Atari one agent step is 4 emulator frames). The first collector batch (process start-up) is
excluded from the timing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a file: import the sibling scripts as the benchmarks package
    sys.path[0] = str(Path(__file__).resolve().parents[1])
from benchmarks.timing import stopwatch
from torchrl_deltairis.collectors import EpisodeCollector, ExplorationPolicy
from torchrl_deltairis.data import EpisodeStore
from torchrl_deltairis.envs import AtariConfig, CrafterConfig, env_config, make_batched_env
from torchrl_deltairis.envs.atari import make_atari_gymnasium
from torchrl_deltairis.envs.crafter import CrafterGymnasium


def plain_fps(cfg, num_envs: int, steps: int) -> float:
    """Steps per second of ``num_envs`` gymnasium envs stepped in turn in this process."""
    make = (lambda i: CrafterGymnasium(cfg, seed=i)) if isinstance(cfg, CrafterConfig) else (
        lambda i: make_atari_gymnasium(cfg))
    envs = [make(i) for i in range(num_envs)]
    rng = np.random.default_rng(0)
    for i, env in enumerate(envs):
        env.reset(seed=i)
    done_steps = 0
    with stopwatch() as elapsed:
        while done_steps < steps:
            for env in envs:
                _, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
                if terminated or truncated:
                    env.reset()
                done_steps += 1
    return done_steps / elapsed()


def collector_fps(cfg, num_envs: int, steps: int, steps_per_batch: int) -> float:
    """Steps per second through ``EpisodeCollector`` into an ``EpisodeStore`` in a temp folder."""
    env = make_batched_env(cfg, num_envs, seed=0)
    num_actions = int(env.action_spec.space.n)
    with tempfile.TemporaryDirectory() as tmp:
        store = EpisodeStore(os.path.join(tmp, "store"), capacity=steps + 2 * num_envs * steps_per_batch)
        collector = EpisodeCollector(env, ExplorationPolicy(num_actions, epsilon=1.0), store,
                                     steps_per_batch=steps_per_batch, progress=False)
        collector.collect(1)  # warm-up: process start, first resets, memmap creation
        with stopwatch() as elapsed:
            collected = collector.collect(steps).num_steps
        assert store.num_steps >= collected, (store.num_steps, collected)
        collector.shutdown()
    return collected / elapsed()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3200, help="agent steps to time per setting")
    parser.add_argument("--crafter-envs", type=int, default=16)
    parser.add_argument("--atari-envs", type=int, default=1)
    parser.add_argument("--game", default="Breakout")
    parser.add_argument("--steps-per-batch", type=int, default=50, help="steps per env in a collector batch")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = [("crafter", env_config({"id": "crafter"}), args.crafter_envs),
                ("atari", AtariConfig(id=args.game), args.atari_envs)]
    rows = []
    for name, cfg, num_envs in settings:
        plain = plain_fps(cfg, num_envs, args.steps)
        collected = collector_fps(cfg, num_envs, args.steps, args.steps_per_batch)
        rows.append({"env": name if name == "crafter" else f"atari/{args.game}", "num_envs": num_envs,
                     "plain_fps": plain, "collector_fps": collected, "ratio": collected / plain})
    print(f"{'env':<16} {'envs':>5} {'plain steps/s':>14} {'collector->store steps/s':>25} {'ratio':>6}")
    for row in rows:
        print(f"{row['env']:<16} {row['num_envs']:>5} {row['plain_fps']:>14.0f} {row['collector_fps']:>25.0f} "
              f"{row['ratio']:>6.2f}")
    meta = {"cpu_count": os.cpu_count(), "torch": torch.__version__, "steps": args.steps}
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"meta": meta, "results": rows}, file, indent=1)


if __name__ == "__main__":
    main()
