"""A run's data path: the training envs, the episode stores (and the disk they will need by the end of the
schedule), the collectors, the collection schedule.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torchrl.envs import EnvBase

from torchrl_deltairis.collectors import EpisodeCollector, ExplorationPolicy
from torchrl_deltairis.config import RunConfig, SplitCollection
from torchrl_deltairis.data import EpisodeStore
from torchrl_deltairis.data.disk import allocated_bytes, store_bytes
from torchrl_deltairis.envs import AtariConfig, EnvConfig, GymConfig, make_batched_env, make_env
from torchrl_deltairis.policy import ActorCriticTrunk, CollectBurnIn
from torchrl_deltairis.trainer import CollectionSchedule


def store_capacity(run: RunConfig) -> int:
    """Room for every real training step of the schedule, plus one batch of overshoot per epoch."""
    col = run.collection.train
    epochs = min(run.common.epochs, col.stop_after_epochs)
    steps = col.config.num_steps_first_epoch + max(epochs - 1, 0) * col.config.num_steps
    return int(steps + epochs * col.num_envs * col.steps_per_batch)


def episode_step_limit(typed: EnvConfig) -> int | None:
    """The most agent steps of one episode of an env (its typed ``env.train``/``env.test`` config), from
    its time limit: Crafter's ``max_episode_steps``; Atari's, in raw frames, over ``frame_skip``; a gym
    env's, or else its registration's; None when the env has none."""
    if isinstance(typed, AtariConfig):
        return math.ceil(typed.max_episode_steps / typed.frame_skip)
    if isinstance(typed, GymConfig) and typed.max_episode_steps is None:
        import gymnasium

        try:
            return gymnasium.spec(typed.id).max_episode_steps
        except gymnasium.error.Error:
            return None
    return typed.max_episode_steps


GB = 1e9


@dataclass(frozen=True)
class DiskNeed:
    """What a run's episode stores will hold on disk at the end of its schedule (bytes)."""

    train_steps: int  # steps the train store holds by the end of the schedule
    test_steps: int  # the most steps one evaluation stores (an upper bound: episodes at their time limit)
    train_bytes: int  # disk bytes each store takes then
    test_bytes: int
    held_bytes: int  # what the stores of this run folder already take (a resumed run)
    needed_bytes: int  # what they still have to take: per store, its final bytes minus what it holds


def disk_need(run: RunConfig, run_dir: Path) -> DiskNeed:
    """The disk the run's episode stores (``run_dir/dataset/{train,test}``) still need by the end of
    the schedule, from the config alone (no env built).

    Train store: each epoch up to ``min(params.common.epochs, params.collection.train.stop_after_epochs)``
    collects ``config.num_steps_first_epoch`` (epoch 1) or ``config.num_steps`` steps in whole batches of
    ``num_envs x steps_per_batch``, the overshoot counted towards the next epoch (as
    ``EpisodeCollector.collect``). Test store (when ``params.evaluation.should``): it is cleared before
    each evaluation and its rows reused, so it takes the most one evaluation stores: at most
    ``params.collection.test.config.num_episodes`` episodes at the env's time limit
    (``episode_step_limit``), capped by ``test_capacity``. A store of N steps takes
    ``store_bytes(N, frame_shape)``, frames ``(params.world_model.image_channels, size, size)`` with the
    env's ``size``. A resumed run's stores already hold part of it on disk (``allocated_bytes``): only
    the rest is needed. A static dataset writes no store: nothing is needed."""
    if run.static_dataset is not None:
        return DiskNeed(0, 0, 0, 0, 0, 0)
    col = run.collection.train
    schedule, batch = collection_schedule(run), col.num_envs * col.steps_per_batch
    train_steps = excess = 0
    for epoch in range(1, min(run.common.epochs, col.stop_after_epochs) + 1):
        target = max(schedule.steps_at(epoch) - excess, 0)
        collected = -(-target // batch) * batch  # whole batches
        train_steps, excess = train_steps + collected, collected - target
    test_steps = 0
    if run.evaluation.should:
        limit = episode_step_limit(run.env_test)
        test_steps = run.collection.test_capacity
        if limit is not None:
            test_steps = min(test_steps, run.collection.test.config.num_episodes * limit)
    needed, held, final = 0, 0, {}
    for split, steps, env in (("train", train_steps, run.env_train), ("test", test_steps, run.env_test)):
        final[split] = store_bytes(steps, (run.models.world_model.image_channels, env.size, env.size))
        holds = allocated_bytes(run_dir / "dataset" / split)
        held, needed = held + holds, needed + max(final[split] - holds, 0)
    return DiskNeed(train_steps, test_steps, final["train"], final["test"], held, needed)


def check_disk_space(run: RunConfig, run_dir: Path) -> str | None:
    """Compares ``disk_need`` with the free space of ``run_dir``'s disk (``shutil.disk_usage``), before
    the run writes anything: raises a one-line ``ValueError`` when the stores will not fit, returns a
    one-line warning when they fit with less than 10 % of their need to spare (other files, such as
    checkpoints and media, need room too), None otherwise."""
    need = disk_need(run, run_dir)
    if need.needed_bytes == 0:
        return None
    free = shutil.disk_usage(run_dir).free
    if free >= 1.1 * need.needed_bytes:
        return None
    col = run.collection
    more = f", {need.held_bytes / GB:.1f} GB of it already on disk" if need.held_bytes else ""
    lower = (f"params.collection.train.config.num_steps_first_epoch={col.train.config.num_steps_first_epoch}, "
            f"params.collection.train.config.num_steps={col.train.config.num_steps}, "
            f"params.collection.train.stop_after_epochs={col.train.stop_after_epochs}")
    if need.test_bytes:
        lower += f" or params.collection.test.config.num_episodes={col.test.config.num_episodes}"
    what = (f"the episode stores need {need.needed_bytes / GB:.1f} GB more by the end of the schedule "
            f"(train {need.train_steps} steps, {need.train_bytes / GB:.1f} GB; test up to {need.test_steps} steps, "
            f"{need.test_bytes / GB:.1f} GB{more})")
    if free < need.needed_bytes:
        raise ValueError(f"{what} but {run_dir} has {free / GB:.1f} GB free; expected at least that much free: "
                         f"lower {lower}, or free some space")
    return (f"{what} and {run_dir} has {free / GB:.1f} GB free, less than 10 % to spare; a full disk stops the "
            f"run (resumable once space is freed); lower {lower} to keep room")


def collection_schedule(run: RunConfig) -> CollectionSchedule:
    """The real-env collection per epoch; none at all on a static dataset."""
    col = run.collection.train
    return CollectionSchedule(num_steps=col.config.num_steps, num_steps_first_epoch=col.config.num_steps_first_epoch,
                              stop_after_epochs=0 if run.static_dataset else col.stop_after_epochs,
                              epsilon=col.config.epsilon)


def make_train_env(run: RunConfig, run_dir: Path, seed: int) -> tuple[EnvBase | None, EpisodeStore, int]:
    """The training envs (``ParallelEnv`` of ``num_envs``), the store at ``run_dir/dataset/train`` and
    the number of actions. On a static dataset: no env, the dataset's train store."""
    static = run.static_dataset
    if static is not None:
        probe = make_env(run.env_train)
        num_actions = int(probe.action_spec.space.n)
        probe.close()
        return None, EpisodeStore(static / "train"), num_actions
    env = make_batched_env(run.env_train, run.collection.train.num_envs, seed=seed)
    store = EpisodeStore(run_dir / "dataset" / "train", capacity=store_capacity(run))
    return env, store, int(env.action_spec.space.n)


def make_collector(env: EnvBase, trunk: ActorCriticTrunk, store: EpisodeStore, collection: SplitCollection, *,
                   steps_per_batch: int, device: torch.device, epsilon: float) -> EpisodeCollector:
    """A collector of ``env`` into ``store`` with the policy ``trunk`` (``params.collection.{train,test}``:
    temperature, sampling, burn-in). The trunk's primer goes on the env, so the LSTM state travels from
    step to step in the TensorDict; the policy runs on ``device``, the env and the store on the CPU."""
    env.append_transform(trunk.make_tensordict_primer())
    conf = collection.config
    policy = ExplorationPolicy(int(env.action_spec.space.n), trunk, epsilon=epsilon, temperature=conf.temperature,
                               should_sample=conf.should_sample, device=device)
    burn = CollectBurnIn(trunk, store, conf.burn_in_length, policy=policy)
    return EpisodeCollector(env, policy, store, steps_per_batch=steps_per_batch, policy_device=device,
                            before_collect=burn)
