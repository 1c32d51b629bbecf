"""Real environments as TorchRL envs: Crafter, the 26 Atari 100k games, and any gymnasium env with
image observations and discrete actions (among them the shipped toy tasks ``Reach``, ``Recall`` and
``Match``).

Every env yields ``"pixels"`` uint8 [3, 64, 64] and takes a categorical ``"action"`` (see
``torchrl_deltairis.keys``). ``make_env`` builds one from a config (a dataclass or a Hydra dict with
an ``id``); ``make_batched_env`` runs N of them in TorchRL's ``ParallelEnv`` (or ``SerialEnv``) and
adds ``is_init`` (recurrent policies reset their state on it) and the episode statistics the
collector logs (``episode_reward``, ``step_count``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
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

from torchrl_deltairis.checked import parse
from torchrl_deltairis.envs.atari import ATARI_100K_GAMES, AtariConfig, make_atari_env, resolve_atari_id
from torchrl_deltairis.envs.crafter import (
    CRAFTER_ACHIEVEMENTS,
    CrafterConfig,
    crafter_score,
    crafter_success_rates,
    make_crafter_env,
)
from torchrl_deltairis.envs.generic import GymConfig, check_gym_id, make_gym_env
from torchrl_deltairis.envs.match import MATCH_ID, Match
from torchrl_deltairis.envs.reach import REACH_ID, Reach
from torchrl_deltairis.envs.recall import RECALL_ID, Recall
from torchrl_deltairis.envs.workers import quiet_worker, start_forkserver

_log = logging.getLogger(__name__)

__all__ = [
    "ATARI_100K_GAMES", "AtariConfig", "CRAFTER_ACHIEVEMENTS", "CrafterConfig", "crafter_score",
    "crafter_success_rates", "env_config", "GymConfig", "make_gym_env", "Match", "MATCH_ID", "Reach", "REACH_ID", "Recall", "RECALL_ID", "make_atari_env", "make_batched_env", "make_crafter_env",
    "make_env", "resolve_atari_id",
]  # fmt: skip


EnvConfig = AtariConfig | CrafterConfig | GymConfig
FAMILIES = {"atari": AtariConfig, "crafter": CrafterConfig, "gym": GymConfig}


def env_config(cfg: Mapping | EnvConfig, where: str = "env") -> EnvConfig:
    """Turns a config mapping (a Hydra ``env.train`` / ``env.test`` node, named ``where`` in errors) into
    the typed config of its env ``family`` (``atari``, ``crafter`` or ``gym``; without it, ``id`` decides
    between Crafter and Atari). Unknown families, keys and ids fail with the valid choices; a value of the
    wrong type or out of its field's range names its key."""
    if isinstance(cfg, (AtariConfig, CrafterConfig, GymConfig)):
        return cfg
    cfg = dict(cfg)
    env_id = str(cfg.get("id", ""))
    family = cfg.get("family") or ("crafter" if env_id.lower() == "crafter" else "atari")
    if family not in FAMILIES:
        raise ValueError(f"Unknown env family {family!r}; valid families: {sorted(FAMILIES)}")
    kind = FAMILIES[family]
    allowed = {f.name for f in fields(kind)}
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ValueError(f"Unknown key(s) {unknown} for a {kind.__name__}; allowed keys: {sorted(allowed)}")
    typed = parse(kind, cfg, where)
    if family == "atari":
        try:
            resolve_atari_id(env_id)
        except ValueError as err:
            raise ValueError(f"{err}, or crafter (or family: gym for any gymnasium id)") from None
    elif family == "gym":
        check_gym_id(typed)
    return typed


def _tracking() -> Compose:
    """What every env we hand out carries: ``is_init`` (where an episode starts), the episode length
    (``"step_count"``) and return (``"episode_reward"``)."""
    return Compose(InitTracker(), StepCounter(), RewardSum())


def _make_base_env(cfg: EnvConfig, *, seed: int | None = None, device: str | torch.device = "cpu") -> EnvBase:
    """The family's env without our transforms (what the batched env's workers run)."""
    if isinstance(cfg, CrafterConfig):
        return make_crafter_env(cfg, seed=seed, device=device)
    if isinstance(cfg, GymConfig):
        return make_gym_env(cfg, device=device)
    return make_atari_env(cfg, device=device)


def make_env(cfg: Mapping | EnvConfig, *, seed: int | None = None,
             device: str | torch.device = "cpu") -> EnvBase:
    """One TorchRL env from a config, with the transforms ``make_batched_env`` adds (``is_init``,
    ``"step_count"``, ``"episode_reward"``): append more with ``env.append_transform``. ``seed``
    (optional) seeds its episodes."""
    env = TransformedEnv(_make_base_env(env_config(cfg), seed=seed, device=device), _tracking())
    if seed is not None:
        env.set_seed(seed)
    return env


def make_batched_env(
    cfg: Mapping | EnvConfig,
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
    trainer_pid = os.getpid()

    def in_worker() -> EnvBase:
        quiet_worker(trainer_pid)  # signals to the whole process group are the trainer's to handle
        return _make_base_env(typed, device=device)

    factory: Callable[[], EnvBase] = EnvCreator(in_worker) if parallel else (
        lambda: _make_base_env(typed, device=device))
    if parallel:
        if multiprocessing.get_start_method(allow_none=True) not in (None, "spawn", "fork", "forkserver"):
            # inside a joblib (loky) worker, as under Hydra's joblib launcher: spawned env workers would
            # inherit the start method "loky", which plain multiprocessing cannot set up
            multiprocessing.set_start_method("spawn", force=True)
        # forkserver: one server process imports torch, TorchRL and the env families once, then forks
        # each worker from it (spawn would import them again in every worker: seconds each)
        start_forkserver(["torchrl_deltairis.envs"])
        _log.info("starting %d env worker processes (%s)", num_envs, getattr(typed, "id", type(typed).__name__))
        batched = ParallelEnv(num_envs, factory, device=device, mp_start_method="forkserver")
    else:
        batched = SerialEnv(num_envs, factory, device=device)
    start = time.perf_counter()
    env = TransformedEnv(batched, _tracking())
    if seed is not None:
        env.set_seed(seed)  # starts the workers
    if parallel and not batched.is_closed:
        _log.info("%d env workers ready in %.0f s", num_envs, time.perf_counter() - start)
    return env
