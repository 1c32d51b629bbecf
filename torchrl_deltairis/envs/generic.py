"""Any registered gymnasium env with image observations and discrete actions, as a TorchRL env.

``python train.py env=gym env.train.id=ID`` uses it. Observations (an RGB or grayscale image, or a
dict holding one under ``pixels_key``) are resized to ``size x size`` RGB with PIL's bilinear filter,
like the reference's Atari frames. ``imports`` lists modules imported first, so that a user's own
``gymnasium.register`` calls run (e.g. ``imports: [my_package.envs]``).
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from PIL import Image
from torchrl.envs import EnvBase, GymWrapper


@dataclass
class GymConfig:
    """One gymnasium env (``configs/env/gym.yaml``)."""

    id: str = "torchrl_deltairis/Reach-v0"  # a registered gymnasium id
    family: str = "gym"
    size: int = 64  # observations are resized to size x size RGB
    max_episode_steps: int | None = None  # None: the registration's own limit
    imports: list[str] = field(default_factory=list)  # modules to import first (they register envs)
    kwargs: dict[str, Any] = field(default_factory=dict)  # passed to gymnasium.make
    pixels_key: str = "pixels"  # for dict observations: the key holding the image


def import_env_modules(modules: list[str]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ValueError(f"env.imports: cannot import {name!r} ({err})") from err


def check_gym_id(cfg: GymConfig) -> None:
    """Imports ``cfg.imports`` and fails with close matches when ``cfg.id`` is not registered."""
    import torchrl_deltairis.envs.match  # noqa: F401  (register the shipped toy tasks)
    import torchrl_deltairis.envs.reach  # noqa: F401
    import torchrl_deltairis.envs.recall  # noqa: F401

    import_env_modules(list(cfg.imports))
    if cfg.id not in gym.registry:
        close = difflib.get_close_matches(cfg.id, list(gym.registry), n=8, cutoff=0.5)
        hint = f"; close matches: {close}" if close else ""
        raise ValueError(f"Unknown gymnasium env id {cfg.id!r} (after importing {list(cfg.imports)}){hint}. "
                         "Register it in a module listed in env.imports.")


class ImageToPixels(gym.ObservationWrapper):
    """Image observation (HWC RGB, HW or HW1 gray, or a dict entry) → ``{"pixels": uint8 [3, S, S]}``."""

    def __init__(self, env: gym.Env, size: int, pixels_key: str = "pixels"):
        super().__init__(env)
        space = env.observation_space
        if isinstance(space, gym.spaces.Dict):
            if pixels_key not in space.spaces:
                raise ValueError(f"dict observation without {pixels_key!r}; keys: {list(space.spaces)}")
            space = space.spaces[pixels_key]
        shape = getattr(space, "shape", None) or ()
        is_image = (isinstance(space, gym.spaces.Box) and space.dtype == np.uint8
                    and (len(shape) == 2 or (len(shape) == 3 and shape[-1] in (1, 3))))
        if not is_image:
            raise ValueError(f"{env.spec.id if env.spec else env}: observations must be uint8 images "
                             f"[H, W, 3], [H, W, 1] or [H, W]; got {space}")
        if not isinstance(env.action_space, gym.spaces.Discrete):
            raise ValueError(f"only discrete action spaces are supported, got {env.action_space}")
        self.size, self.pixels_key = size, pixels_key
        self.observation_space = gym.spaces.Dict({"pixels": gym.spaces.Box(0, 255, (3, size, size), dtype=np.uint8)})

    def observation(self, observation) -> dict[str, np.ndarray]:
        if isinstance(observation, dict):
            observation = observation[self.pixels_key]
        image = np.asarray(observation, dtype=np.uint8)
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        resized = Image.fromarray(image).convert("RGB").resize((self.size, self.size), Image.BILINEAR)
        return {"pixels": np.ascontiguousarray(np.asarray(resized).transpose(2, 0, 1))}


def make_gym_env(cfg: GymConfig, *, device: str | torch.device = "cpu") -> EnvBase:
    check_gym_id(cfg)
    kwargs = dict(cfg.kwargs)
    if cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = cfg.max_episode_steps
    env = ImageToPixels(gym.make(cfg.id, **kwargs), cfg.size, cfg.pixels_key)
    return GymWrapper(env, categorical_action_encoding=True, device=device)
