"""A run's data path: the training envs, the episode stores (and the disk they will need by the end of the
schedule), the collectors, the collection schedule.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torchrl.envs import EnvBase

from torchrl_deltairis.build.checks import static_dataset
from torchrl_deltairis.collectors import EpisodeCollector, ExplorationPolicy
from torchrl_deltairis.data import EpisodeStore
from torchrl_deltairis.data.store import allocated_bytes, store_bytes
from torchrl_deltairis.envs import AtariConfig, GymConfig, env_config, make_batched_env, make_env
from torchrl_deltairis.policy import ActorCriticTrunk, CollectBurnIn
from torchrl_deltairis.trainer import CollectionSchedule


def store_capacity(cfg: DictConfig) -> int:
    """Room for every real training step of the schedule, plus one batch of overshoot per epoch."""
    col = cfg.params.collection.train
    epochs = min(cfg.params.common.epochs, col.stop_after_epochs)
    steps = col.config.num_steps_first_epoch + max(epochs - 1, 0) * col.config.num_steps
    return int(steps + epochs * col.num_envs * col.steps_per_batch)


def capacity_of_test_store(cfg: DictConfig) -> int:
    """``params.collection.test_capacity`` (absent: 2M), the most steps one evaluation may store."""
    return int(cfg.params.collection.get("test_capacity", 2_000_000))


def episode_step_limit(env: DictConfig) -> int | None:
    """The most agent steps of one episode of ``env`` (an ``env.train``/``env.test`` node), from its
    time limit: Crafter's ``max_episode_steps``; Atari's, in raw frames, over ``frame_skip``; a gym
    env's, or else its registration's; None when the env has none."""
    typed = env_config(OmegaConf.to_container(env, resolve=True))
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


def disk_need(cfg: DictConfig, run_dir: Path) -> DiskNeed:
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
    if static_dataset(cfg) is not None:
        return DiskNeed(0, 0, 0, 0, 0, 0)
    col = cfg.params.collection.train
    schedule, batch = collection_schedule(cfg), int(col.num_envs) * int(col.steps_per_batch)
    train_steps = excess = 0
    for epoch in range(1, min(int(cfg.params.common.epochs), int(col.stop_after_epochs)) + 1):
        target = max(schedule.steps_at(epoch) - excess, 0)
        collected = -(-target // batch) * batch  # whole batches
        train_steps, excess = train_steps + collected, collected - target
    test_steps = 0
    if cfg.params.evaluation.should:
        limit = episode_step_limit(cfg.env.test)
        test_steps = capacity_of_test_store(cfg)
        if limit is not None:
            test_steps = min(test_steps, int(cfg.params.collection.test.config.num_episodes) * limit)
    needed, held, final = 0, 0, {}
    for split, steps in (("train", train_steps), ("test", test_steps)):
        size = env_config(OmegaConf.to_container(cfg.env[split], resolve=True)).size
        final[split] = store_bytes(steps, (int(cfg.params.world_model.image_channels), size, size))
        holds = allocated_bytes(run_dir / "dataset" / split)
        held, needed = held + holds, needed + max(final[split] - holds, 0)
    return DiskNeed(train_steps, test_steps, final["train"], final["test"], held, needed)


def check_disk_space(cfg: DictConfig, run_dir: Path) -> str | None:
    """Compares ``disk_need`` with the free space of ``run_dir``'s disk (``shutil.disk_usage``), before
    the run writes anything: raises a one-line ``ValueError`` when the stores will not fit, returns a
    one-line warning when they fit with less than 10 % of their need to spare (other files, such as
    checkpoints and media, need room too), None otherwise."""
    need = disk_need(cfg, run_dir)
    if need.needed_bytes == 0:
        return None
    free = shutil.disk_usage(run_dir).free
    if free >= 1.1 * need.needed_bytes:
        return None
    col = cfg.params.collection
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


def collection_schedule(cfg: DictConfig) -> CollectionSchedule:
    """The real-env collection per epoch; none at all on a static dataset."""
    col = cfg.params.collection.train
    return CollectionSchedule(num_steps=col.config.num_steps, num_steps_first_epoch=col.config.num_steps_first_epoch,
                              stop_after_epochs=0 if static_dataset(cfg) else col.stop_after_epochs,
                              epsilon=col.config.epsilon)


def make_train_env(cfg: DictConfig, run_dir: Path, seed: int) -> tuple[EnvBase | None, EpisodeStore, int]:
    """The training envs (``ParallelEnv`` of ``num_envs``), the store at ``run_dir/dataset/train`` and
    the number of actions. On a static dataset: no env, the dataset's train store."""
    col = cfg.params.collection.train
    env_cfg = OmegaConf.to_container(cfg.env.train, resolve=True)
    static = static_dataset(cfg)
    if static is not None:
        probe = make_env(env_cfg)
        num_actions = int(probe.action_spec.space.n)
        probe.close()
        return None, EpisodeStore(static / "train"), num_actions
    env = make_batched_env(env_cfg, col.num_envs, seed=seed)
    store = EpisodeStore(run_dir / "dataset" / "train", capacity=store_capacity(cfg))
    return env, store, int(env.action_spec.space.n)


def make_collector(env: EnvBase, trunk: ActorCriticTrunk, store: EpisodeStore, collection: DictConfig, *,
                   steps_per_batch: int, device: torch.device, epsilon: float) -> EpisodeCollector:
    """A collector of ``env`` into ``store`` with the policy ``trunk`` (``params.collection.{train,test}``:
    temperature, sampling, burn-in). The trunk's primer goes on the env, so the LSTM state travels from
    step to step in the TensorDict; the policy runs on ``device``, the env and the store on the CPU."""
    env.append_transform(trunk.make_tensordict_primer())
    conf = collection.config
    policy = ExplorationPolicy(int(env.action_spec.space.n), trunk, epsilon=epsilon, temperature=conf.temperature,
                               should_sample=conf.should_sample, device=device)
    burn = CollectBurnIn(trunk, store, int(conf.burn_in_length), policy=policy)
    return EpisodeCollector(env, policy, store, steps_per_batch=steps_per_batch, policy_device=device,
                            before_collect=burn)
