"""The one place where configs become objects (devices, envs, store, collector).

It reads the Hydra config laid out like the reference's (``env.train``, ``env.test``,
``params.collection.*``); everything it builds is a plain object the caller wires together.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from torchrl_deltairis.collectors import EpisodeCollector, ExplorationPolicy
from torchrl_deltairis.data import EpisodeStore
from torchrl_deltairis.envs import env_config, make_batched_env

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def resolve_device(name: str) -> torch.device:
    """``"auto"`` is the first GPU when there is one, else the CPU; other names are checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"params.common.device={name!r} is not a device; expected one of {DEVICE_CHOICES}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"params.common.device={name!r} but no CUDA device is available; use 'auto' or 'cpu'")
    return device


def validate_env_configs(cfg: DictConfig) -> None:
    """Fails on an unknown env id or key, before any work."""
    for split in ("train", "test"):
        env_config(OmegaConf.to_container(cfg.env[split], resolve=True))


def store_capacity(cfg: DictConfig) -> int:
    """Room for every real training step of the schedule, plus one batch of overshoot per epoch."""
    col = cfg.params.collection.train
    epochs = min(cfg.params.common.epochs, col.stop_after_epochs)
    steps = col.config.num_steps_first_epoch + max(epochs - 1, 0) * col.config.num_steps
    return int(steps + epochs * col.num_envs * col.steps_per_batch)


def make_train_collection(cfg: DictConfig, run_dir: Path, seed: int) -> tuple[EpisodeCollector, EpisodeStore]:
    """The training envs (``ParallelEnv`` of ``num_envs``), the store at ``run_dir/dataset/train``,
    and the collector, its policy uniform random (the first epoch's) until the actor is set."""
    col = cfg.params.collection.train
    env = make_batched_env(OmegaConf.to_container(cfg.env.train, resolve=True), col.num_envs, seed=seed)
    store = EpisodeStore(run_dir / "dataset" / "train", capacity=store_capacity(cfg))
    policy = ExplorationPolicy(int(env.action_spec.space.n), None, epsilon=1.0,
                               temperature=col.config.temperature, should_sample=col.config.should_sample)
    collector = EpisodeCollector(env, policy, store, steps_per_batch=col.steps_per_batch)
    return collector, store
