"""Real environments as TorchRL envs: Crafter and the 26 Atari 100k games.

Every env yields ``"pixels"`` uint8 [3, 64, 64] and takes a categorical ``"action"`` (see
``torchrl_deltairis.keys``). ``make_env`` builds one from a config (a dataclass or a Hydra dict with
an ``id``); ``make_batched_env`` runs N of them in TorchRL's ``ParallelEnv`` (or ``SerialEnv``) and
adds ``is_init`` (recurrent policies reset their state on it) and the episode statistics the
collector logs (``episode_reward``, ``step_count``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields

import torch
from torchrl.envs import (
    Compose,
    EnvBase,
    EnvCreator,
    InitTracker,
    ParallelEnv,
    RewardSum,
    SerialEnv,
    StepCounter,
    TransformedEnv,
)

from torchrl_deltairis.envs.atari import ATARI_100K_GAMES, AtariConfig, make_atari_env, resolve_atari_id
from torchrl_deltairis.envs.crafter import (
    CRAFTER_ACHIEVEMENTS,
    CrafterConfig,
    crafter_score,
    crafter_success_rates,
    make_crafter_env,
)

__all__ = [
    "ATARI_100K_GAMES", "AtariConfig", "CRAFTER_ACHIEVEMENTS", "CrafterConfig", "crafter_score",
    "crafter_success_rates", "env_config", "make_atari_env", "make_batched_env", "make_crafter_env",
    "make_env", "resolve_atari_id",
]  # fmt: skip


def env_config(cfg: Mapping | AtariConfig | CrafterConfig) -> AtariConfig | CrafterConfig:
    """Turns a config mapping (a Hydra ``env.train`` / ``env.test`` node) into the typed config of
    its env family, chosen by ``id``. Unknown keys and unknown ids fail with the valid choices."""
    if isinstance(cfg, (AtariConfig, CrafterConfig)):
        return cfg
    cfg = dict(cfg)
    env_id = str(cfg.get("id", ""))
    kind = CrafterConfig if env_id.lower() == "crafter" else AtariConfig
    if kind is AtariConfig:
        try:
            resolve_atari_id(env_id)
        except ValueError as err:
            raise ValueError(f"{err}, or crafter") from None
    allowed = {f.name for f in fields(kind)}
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ValueError(f"Unknown key(s) {unknown} for a {kind.__name__}; allowed keys: {sorted(allowed)}")
    return kind(**cfg)


def make_env(cfg: Mapping | AtariConfig | CrafterConfig, *, seed: int | None = None,
             device: str | torch.device = "cpu") -> EnvBase:
    """One TorchRL env from a config; ``seed`` (optional) seeds its episodes."""
    cfg = env_config(cfg)
    if isinstance(cfg, CrafterConfig):
        env = make_crafter_env(cfg, seed=seed, device=device)
    else:
        env = make_atari_env(cfg, device=device)
    if seed is not None:
        env.set_seed(seed)
    return env


def make_batched_env(
    cfg: Mapping | AtariConfig | CrafterConfig,
    num_envs: int,
    *,
    seed: int | None = None,
    parallel: bool | None = None,
    device: str | torch.device = "cpu",
) -> EnvBase:
    """``num_envs`` copies of an env, batch size ``[num_envs]``, each resetting on its own, with the
    episode return (``"episode_reward"``) and length (``"step_count"``) tracked per env.

    ``parallel`` picks ``ParallelEnv`` (one process per env) or ``SerialEnv``; by default processes
    are used when there is more than one env. Env ``i`` is seeded with ``seed + i``.
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    typed = env_config(cfg)
    parallel = num_envs > 1 if parallel is None else parallel
    factory: Callable[[], EnvBase] = EnvCreator(lambda: make_env(typed, device=device)) if parallel else (
        lambda: make_env(typed, device=device))
    batched_cls = ParallelEnv if parallel else SerialEnv
    batched = batched_cls(num_envs, factory, device=device)
    env = TransformedEnv(batched, Compose(InitTracker(), StepCounter(), RewardSum()))
    if seed is not None:
        env.set_seed(seed)
    return env
