"""Crafter (Hafner, 2021) as a TorchRL environment, and the Crafter score.

The reference uses ``TimeLimit(crafter.Env(reward=True), 10000)``. Crafter has no TorchRL wrapper,
so a small gymnasium shim splits crafter's single ``done`` into ``terminated`` (the player died) and
``truncated`` (the episode length ran out; docs/departures.md#terminated-and-truncated) and reports the achievements unlocked so far.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torchrl.data import Binary
from torchrl.envs import EnvBase, GymWrapper, default_info_dict_reader

from torchrl_deltairis import keys
from torchrl_deltairis.compat import crafter_number_objects

CRAFTER_NUM_ACTIONS = 17
CRAFTER_ACHIEVEMENTS = (
    "collect_coal", "collect_diamond", "collect_drink", "collect_iron", "collect_sapling",
    "collect_stone", "collect_wood", "defeat_skeleton", "defeat_zombie", "eat_cow", "eat_plant",
    "make_iron_pickaxe", "make_iron_sword", "make_stone_pickaxe", "make_stone_sword",
    "make_wood_pickaxe", "make_wood_sword", "place_furnace", "place_plant", "place_stone",
    "place_table", "wake_up",
)  # fmt: skip  (crafter.constants.achievements, sorted; checked by a test)


@dataclass
class CrafterConfig:
    """One Crafter environment (the reference's ``config/env/crafter.yaml``)."""

    id: str = "crafter"  # only "crafter" is valid
    family: str = "crafter"
    size: int = 64  # observation size in pixels (crafter's ``size``)
    max_episode_steps: int = 10_000  # crafter's ``length``: the time limit, reported as truncation
    reward: bool = True  # crafter's sparse achievement reward plus the +-0.1 health signal


class CrafterGymnasium(gym.Env):
    """``crafter.Env`` under the gymnasium 1.x API, observations ``{"pixels": uint8 [3, H, W]}`` and
    ``info["achievements"]``: a bool [22] vector of what was unlocked so far in the episode."""

    metadata = {"render_modes": []}

    def __init__(self, cfg: CrafterConfig | None = None, seed: int | None = None):
        import crafter

        crafter_number_objects()  # reproducible under a seed (compat.py)
        self.cfg = cfg if cfg is not None else CrafterConfig()
        if self.cfg.id != "crafter":
            raise ValueError(f"Unknown Crafter env id {self.cfg.id!r}. Valid names: crafter")
        size = (self.cfg.size, self.cfg.size)
        self._env = crafter.Env(area=(64, 64), size=size, length=self.cfg.max_episode_steps,
                                reward=self.cfg.reward, seed=seed)
        self.observation_space = gym.spaces.Dict(
            {"pixels": gym.spaces.Box(0, 255, (3, *size), dtype=np.uint8)}
        )
        self.action_space = gym.spaces.Discrete(CRAFTER_NUM_ACTIONS)

    @staticmethod
    def _pixels(obs: np.ndarray) -> dict[str, np.ndarray]:
        return {"pixels": np.ascontiguousarray(obs.transpose(2, 0, 1))}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            # crafter draws each world from hash((seed, episode index)): restart that sequence.
            self._env._seed = int(seed)
            self._env._episode = 0
        obs = self._env.reset()
        return self._pixels(obs), {"achievements": np.zeros(len(CRAFTER_ACHIEVEMENTS), dtype=bool)}

    def step(self, action: int) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        obs, reward, done, info = self._env.step(int(action))
        terminated = bool(info["discount"] == 0.0)  # crafter sets discount 0 when the player dies
        truncated = bool(done) and not terminated
        unlocked = np.array([info["achievements"][name] > 0 for name in CRAFTER_ACHIEVEMENTS])
        return self._pixels(obs), float(reward), terminated, truncated, {"achievements": unlocked}


def make_crafter_env(
    cfg: CrafterConfig | None = None, *, seed: int | None = None, device: str | torch.device = "cpu"
) -> EnvBase:
    """A TorchRL Crafter env: ``"pixels"`` uint8 [3, 64, 64], categorical ``"action"`` (17), and
    ``"achievements"`` bool [22] (read it at the done step to know what the episode unlocked)."""
    env = GymWrapper(CrafterGymnasium(cfg, seed=seed), categorical_action_encoding=True, device=device)
    spec = Binary(n=len(CRAFTER_ACHIEVEMENTS), shape=(len(CRAFTER_ACHIEVEMENTS),), dtype=torch.bool)
    return env.set_info_dict_reader(default_info_dict_reader([keys.ACHIEVEMENTS], spec=[spec]))


def crafter_success_rates(unlocked: torch.Tensor) -> torch.Tensor:
    """Per-achievement success rates in percent from a bool [num_episodes, 22] table."""
    if unlocked.ndim != 2 or unlocked.shape[-1] != len(CRAFTER_ACHIEVEMENTS):
        raise ValueError(f"expected achievements of shape [episodes, {len(CRAFTER_ACHIEVEMENTS)}], "
                         f"got {tuple(unlocked.shape)}")
    if unlocked.shape[0] == 0:
        raise ValueError("the Crafter score needs at least one finished episode, got none")
    return unlocked.float().mean(0) * 100.0


def crafter_score(unlocked: torch.Tensor) -> float:
    """The Crafter score (Hafner, 2021, eq. 1): ``exp(mean_i log(1 + s_i)) - 1`` over the 22 success
    rates ``s_i`` in percent, a geometric mean that rewards unlocking rare achievements."""
    rates = crafter_success_rates(unlocked)
    return float(torch.exp(torch.log1p(rates).mean()) - 1.0)


def crafter_metrics(unlocked: torch.Tensor, prefix: str = "") -> dict[str, float]:
    """Per-achievement success rates (%) of episodes ``unlocked`` bool ``[N, 22]`` and the Crafter score."""
    rates = crafter_success_rates(unlocked)
    out = {f"{prefix}achievements/{name}": float(r) for name, r in zip(CRAFTER_ACHIEVEMENTS, rates)}
    out[f"{prefix}crafter_score"] = crafter_score(unlocked)
    return out
