"""Atari 100k environments with the reference's preprocessing, as TorchRL environments."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import torch
from torchrl.data import Unbounded
from torchrl.envs import EnvBase, GymWrapper, default_info_dict_reader

from torchrl_deltairis import keys
from torchrl_deltairis.checked import setting
from torchrl_deltairis.envs.atari_wrappers import EpisodicLife, MaxAndSkip, NoopReset, PixelsDict, ResizeFrames

ATARI_100K_GAMES = (
    "Alien", "Amidar", "Assault", "Asterix", "BankHeist", "BattleZone", "Boxing", "Breakout",
    "ChopperCommand", "CrazyClimber", "DemonAttack", "Freeway", "Frostbite", "Gopher", "Hero",
    "Jamesbond", "Kangaroo", "Krull", "KungFuMaster", "MsPacman", "Pong", "PrivateEye", "Qbert",
    "RoadRunner", "Seaquest", "UpNDown",
)  # fmt: skip


def resolve_atari_id(name: str) -> str:
    """Maps ``"Breakout"``, ``"breakout"`` or ``"BreakoutNoFrameskip-v4"`` to the reference's gym id
    ``"BreakoutNoFrameskip-v4"``; anything else raises a ``ValueError`` listing the valid names."""
    by_lower = {game.lower(): game for game in ATARI_100K_GAMES}
    stem = name[: -len("NoFrameskip-v4")] if name.endswith("NoFrameskip-v4") else name
    game = by_lower.get(stem.lower())
    if game is None or (stem != name and stem != game):
        valid = ", ".join(f"{g} / {g}NoFrameskip-v4" for g in ATARI_100K_GAMES)
        raise ValueError(f"Unknown Atari 100k game or env id {name!r}. Valid names: {valid}")
    return f"{game}NoFrameskip-v4"


# The standard human and random scores of the 26 games (the human-normalised score's ends); the same
# values as benchmarks/reference_results/{HUMAN,RANDOM}.json (tests/test_atari.py checks they agree).
HUMAN_SCORES = {
    "Alien": 7127.7, "Amidar": 1719.5, "Assault": 742.0, "Asterix": 8503.3, "BankHeist": 753.1,
    "BattleZone": 37187.5, "Boxing": 12.1, "Breakout": 30.5, "ChopperCommand": 7387.8,
    "CrazyClimber": 35829.4, "DemonAttack": 1971.0, "Freeway": 29.6, "Frostbite": 4334.7, "Gopher": 2412.5,
    "Hero": 30826.4, "Jamesbond": 302.8, "Kangaroo": 3035.0, "Krull": 2665.5, "KungFuMaster": 22736.3,
    "MsPacman": 6951.6, "Pong": 14.6, "PrivateEye": 69571.3, "Qbert": 13455.0, "RoadRunner": 7845.0,
    "Seaquest": 42054.7, "UpNDown": 11693.2,
}  # fmt: skip
RANDOM_SCORES = {
    "Alien": 227.8, "Amidar": 5.8, "Assault": 222.4, "Asterix": 210.0, "BankHeist": 14.2,
    "BattleZone": 2360.0, "Boxing": 0.1, "Breakout": 1.7, "ChopperCommand": 811.0, "CrazyClimber": 10780.5,
    "DemonAttack": 152.1, "Freeway": 0.0, "Frostbite": 65.2, "Gopher": 257.6, "Hero": 1027.0,
    "Jamesbond": 29.0, "Kangaroo": 52.0, "Krull": 1598.0, "KungFuMaster": 258.5, "MsPacman": 307.3,
    "Pong": -20.7, "PrivateEye": 24.9, "Qbert": 163.9, "RoadRunner": 11.5, "Seaquest": 68.4,
    "UpNDown": 533.4,
}  # fmt: skip


def human_normalized_score(name: str, score: float) -> float:
    """(score − random) / (human − random) for an Atari 100k game given by any name ``resolve_atari_id`` takes."""
    game = resolve_atari_id(name)[: -len("NoFrameskip-v4")]
    return (score - RANDOM_SCORES[game]) / (HUMAN_SCORES[game] - RANDOM_SCORES[game])


@dataclass
class AtariConfig:
    """One Atari environment (the reference's ``config/env/atari.yaml``, train side by default)."""

    id: str = "BreakoutNoFrameskip-v4"  # a game of Atari 100k, by gym id or short name ("Breakout")
    family: str = "atari"
    size: int = 64  # observations are size x size RGB, resized with PIL bilinear from each raw frame
    max_episode_steps: int = 20_000  # time limit in *raw frames* (train 20,000; test 108,000)
    noop_max: int = 30  # 1..noop_max no-op frames at reset (test: 1)
    frame_skip: int = 4  # action repeat, max-pool over the last two frames
    done_on_life_loss: bool = True  # single-life training episodes (test: False)
    clip_reward: bool = False  # the reference never clips: rewards stay raw
    repeat_action_probability: float = setting(0.0, doc="sticky actions: 0 as the reference, 0.25 for the v5 "
                                                        "protocol", low=0, high=1)


def make_atari_gymnasium(cfg: AtariConfig, render_mode: str | None = None) -> gym.Env:
    """The gymnasium env with the reference's wrappers, observations ``{"pixels": uint8 [3, H, W]}``."""
    import ale_py  # noqa: F401  (ships the ROMs; imported here so Crafter-only users never load it)

    gym.register_envs(ale_py)
    if cfg.clip_reward:
        raise ValueError("clip_reward=True is not supported: the reference trains on unclipped rewards")
    env = gym.make(
        resolve_atari_id(cfg.id),
        repeat_action_probability=cfg.repeat_action_probability,
        render_mode=render_mode,
        disable_env_checker=True,
    )
    env = ResizeFrames(env, cfg.size)
    env = gym.wrappers.TimeLimit(env, max_episode_steps=cfg.max_episode_steps)
    env = NoopReset(env, cfg.noop_max)
    env = MaxAndSkip(env, cfg.frame_skip)
    if cfg.done_on_life_loss:
        env = EpisodicLife(env)
    return PixelsDict(env)


def make_atari_env(cfg: AtariConfig | None = None, *, device: str | torch.device = "cpu", **overrides) -> EnvBase:
    """A TorchRL Atari env: ``"pixels"`` uint8 [3, 64, 64], categorical ``"action"``, and the info key
    ``"lives"``. Keyword overrides replace fields of ``cfg`` (e.g. ``make_atari_env(id="Pong")``)."""
    cfg = cfg if cfg is not None else AtariConfig()
    if overrides:
        cfg = AtariConfig(**{**cfg.__dict__, **overrides})
    resolve_atari_id(cfg.id)  # fail before building anything
    env = GymWrapper(make_atari_gymnasium(cfg), categorical_action_encoding=True, device=device)
    reader = default_info_dict_reader([keys.LIVES], spec=[Unbounded((1,), dtype=torch.int64)])
    return env.set_info_dict_reader(reader)
