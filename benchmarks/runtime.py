"""How long will my run take? Measures a preset's pieces on this machine and projects its whole schedule.

    python benchmarks/runtime.py                                   # Crafter (the default preset)
    python benchmarks/runtime.py env=atari params=atari env.train.id=Breakout
    python benchmarks/runtime.py params=smoke --repeats 1          # the same overrides as train.py

It builds the run exactly as ``train.py [overrides]`` would (in a temporary folder, deleted after),
then times, after a warm-up, a few of each: real collection steps (the preset's ``num_envs`` env
workers and the policy, from epoch 2's exploration on), and one update of the tokenizer, the world
model and the actor-critic (imagination included) at the preset's batch sizes, precision and device.
From these and the preset's schedule (``params.collection`` and ``params.training``: steps per epoch,
first-epoch budgets, ``start_after_epochs``, ``stop_after_epochs``; evaluation every
``params.evaluation.every`` epochs and at the last) it prints the time of the first epoch, of a
steady epoch and of the whole run, split into collection, tokenizer, world model, actor-critic and
evaluation, and one line: "<game> on this machine: ~N h".

Evaluation is projected as its test episodes' env steps (``num_episodes`` × ``--test-episode-steps``,
default 1,000: a trained agent's episodes are longer than the timed collection's) at the measured
collection rate, times ``test.num_envs / train.num_envs`` workers' parallelism; the evaluation's
losses, media and checkpoints are left out (seconds against hours). The projection assumes steady
per-update costs: the store's growth and the episodes' lengths change little of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

if __package__ in (None, ""):  # run as a file: import the sibling scripts as the benchmarks package
    sys.path[0] = str(Path(__file__).resolve().parents[1])
from benchmarks.timing import stopwatch
from torchrl_deltairis import projection
from torchrl_deltairis.build.components import schedule_of
from torchrl_deltairis.build.data import collection_schedule
from torchrl_deltairis.projection import COMPONENTS, PARTS, RunSchedule, duration
from torchrl_deltairis.build.lifecycle import build_trainer
from torchrl_deltairis.config import RunConfig
from torchrl_deltairis.envs import AtariConfig, CrafterConfig

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class Costs:
    """Measured seconds: per real env step (all envs together / steps) and per update of each component."""

    collection_step: float
    updates: dict[str, float]
    test_episode_steps: float


def project(run: RunConfig, costs: Costs) -> list[dict[str, float]]:
    """Seconds per part for every epoch of ``run``'s schedule (a list, epoch 1 first), by the trainer's
    own projection (torchrl_deltairis/projection.py), evaluation as its test episodes' env steps."""
    col, training = run.collection, run.training
    test_steps = col.test.config.num_episodes * costs.test_episode_steps
    parallel = col.test.num_envs / col.train.num_envs
    grad_acc = {name: training.component(name).grad_acc_steps for name in COMPONENTS}
    schedule = RunSchedule(run.common.epochs, collection_schedule(run),
                           {name: schedule_of(training.component(name)) for name in COMPONENTS},
                           run.evaluation.every if run.evaluation.should and not run.static_dataset else None)
    return projection.project(schedule, projection.Costs(
        collection_step=costs.collection_step,
        updates={name: cost * grad_acc[name] for name, cost in costs.updates.items()},
        evaluation=test_steps * costs.collection_step / parallel))


def steady_epoch(run: RunConfig) -> int:
    """The first epoch after epoch 1 in which every component trains (Atari: 76), within the run."""
    start = max(run.training.component(name).start_after_epochs for name in COMPONENTS)
    return min(max(start + 1, 2), run.common.epochs)


def table(rows: list[dict[str, float]], steady_at: int = 2) -> str:
    """Markdown: the first epoch, a steady epoch (``steady_at``: every component trains), the whole run."""
    steady = rows[min(steady_at, len(rows)) - 1]
    total = {k: sum(r[k] for r in rows) for k in PARTS}
    lines = ["| | " + " | ".join(PARTS) + " | all |", "|---" * (len(PARTS) + 2) + "|"]
    for label, row in (("first epoch", rows[0]), (f"steady epoch ({steady_at})", steady),
                       (f"whole run ({len(rows)} epochs)", total)):
        lines.append(f"| {label} | " + " | ".join(duration(row[k]) for k in PARTS) + f" | {duration(sum(row.values()))} |")
    return "\n".join(lines)


def run_name(run: RunConfig) -> str:
    env = run.env_train
    if isinstance(env, CrafterConfig):
        return "Crafter"
    return f"Atari 100k {env.id.removesuffix('NoFrameskip-v4')}" if isinstance(env, AtariConfig) else env.id


def measure(cfg: DictConfig, warmup: int, repeats: int, progress: bool = True) -> Costs:
    """Builds the run of the Hydra config ``cfg`` in a temporary folder and times its pieces (see the
    module docstring)."""
    col = RunConfig.from_hydra(cfg).collection.train
    folder = Path(tempfile.mkdtemp(prefix="deltairis-runtime-"))
    # a few batches are stored, not the schedule's stores: no disk check (a Crafter run needs ~131 GB)
    trainer = build_trainer(cfg, folder, train_script=ROOT / "train.py", progress=progress, check_disk=False)
    try:
        device = trainer.device
        batch = col.num_envs * col.steps_per_batch
        trainer.policy.epsilon = col.config.epsilon
        trainer.collector.collect(batch * max(warmup, 1), desc="warm-up")  # data to sample from, too
        with stopwatch(device) as elapsed:
            stats = trainer.collector.collect(batch * repeats, desc="timed collection")
        collection_step = elapsed() / max(stats.num_steps, 1)
        updates = {}
        for component in trainer.components:
            original = component.schedule
            component.schedule = dataclasses.replace(original, start_after_epochs=0, steps_first_epoch=None,
                                                     steps_per_epoch=warmup)
            if warmup:
                component.train_epoch(2, device, progress)
            component.schedule = dataclasses.replace(component.schedule, steps_per_epoch=repeats)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = component.train_epoch(2, device, progress)[f"{component.name}/seconds"]
            updates[component.name] = seconds / (repeats * original.grad_acc_steps)
            component.schedule = original
        return Costs(collection_step, updates, test_episode_steps=1000.0)
    finally:
        trainer.close()
        shutil.rmtree(folder, ignore_errors=True)


def compose_config(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("config", overrides=["wandb.mode=disabled", *overrides])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for train.py")
    parser.add_argument("--warmup", type=int, default=1, help="untimed updates (and collector batches) first")
    parser.add_argument("--repeats", type=int, default=2, help="timed updates per component and collector batches")
    parser.add_argument("--test-episode-steps", type=float, default=None,
                        help="assumed length of a test episode in agent steps (default 1000)")
    parser.add_argument("--json", type=Path, default=None, help="write the costs and the projection here")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        parser.error(f"--repeats={args.repeats} --warmup={args.warmup}; expected repeats >= 1 and warmup >= 0")
    cfg = compose_config(args.overrides)
    run = RunConfig.from_hydra(cfg)
    if run.static_dataset is not None:
        parser.error("params.collection.path_to_static_dataset is set; runtime.py measures a run that collects")
    costs = measure(cfg, args.warmup, args.repeats, progress=not args.quiet)
    if args.test_episode_steps is not None:
        costs.test_episode_steps = args.test_episode_steps
    rows = project(run, costs)
    total = sum(sum(r.values()) for r in rows)
    device = build_device_name(run)
    print(f"measured on {device}: {costs.collection_step * 1000:.2f} ms per env step; per update: "
          + ", ".join(f"{k} {v:.3f} s" for k, v in costs.updates.items())
          + f"; test episodes of {costs.test_episode_steps:.0f} steps")
    print(table(rows, steady_epoch(run)))
    print(f"{run_name(run)} on this machine: ~{duration(total)}")
    if args.json is not None:
        args.json.write_text(json.dumps(dict(overrides=args.overrides, device=device,
                                             costs=dataclasses.asdict(costs), epochs=rows, total_seconds=total),
                                        indent=2))


def build_device_name(run: RunConfig) -> str:
    device = run.device
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads)"


if __name__ == "__main__":
    main(sys.argv[1:])
