"""Gymnasium wrappers that reproduce the reference's Atari preprocessing exactly (docs/departures.md#atari-preprocessing).

Innermost first, as the reference stacks them::

    gym.make("<Game>NoFrameskip-v4")   raw frames, minimal action set, no sticky actions
    -> ResizeFrames(64)                PIL bilinear resize of *every* raw frame to 64x64 RGB
    -> TimeLimit(max_episode_frames)   counted in raw frames (20,000 train / 108,000 test)
    -> NoopReset(noop_max)             1..noop_max no-op frames after a real reset (test: exactly 1)
    -> MaxAndSkip(4)                   repeat the action, sum rewards, max over the last two frames
    -> EpisodicLife                    (train only) a life loss terminates the stored episode; the
                                       game goes on, and the next reset is a no-op step

Why not gymnasium's ``AtariPreprocessing``: it max-pools raw frames *before* resizing (the reference
resizes first), resizes with OpenCV's INTER_AREA (the reference uses PIL bilinear), and its
``terminal_on_life_loss`` resets the whole game at the next reset (the reference continues it).
Why not TorchRL's transforms: they draw no random no-op counts and do not max-pool.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from PIL import Image


class ResizeFrames(gym.ObservationWrapper):
    """Resizes every raw RGB frame to ``size x size`` with PIL's bilinear filter (uint8 HWC)."""

    def __init__(self, env: gym.Env, size: int = 64):
        super().__init__(env)
        self.size = size
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), dtype=np.uint8)
        self.original_obs: np.ndarray | None = None  # the last full-resolution frame, for viewers

    def observation(self, observation: np.ndarray) -> np.ndarray:
        self.original_obs = observation
        image = Image.fromarray(observation).resize((self.size, self.size), Image.BILINEAR)
        return np.asarray(image, dtype=np.uint8)


class NoopReset(gym.Wrapper):
    """After a real reset, takes ``U{1..noop_max}`` no-op (action 0) frames, drawn from the env's
    seeded generator. With ``noop_max=1`` exactly one no-op is taken (the reference's test env)."""

    def __init__(self, env: gym.Env, noop_max: int = 30):
        super().__init__(env)
        if noop_max < 1:
            raise ValueError(f"noop_max must be >= 1 (the reference takes at least one no-op), got {noop_max}")
        meanings = env.unwrapped.get_action_meanings()
        if meanings[0] != "NOOP":
            raise ValueError(f"action 0 must be NOOP for no-op resets, the game's actions are {meanings}")
        self.noop_max = noop_max
        self.last_noops = 0  # how many no-ops the last reset took (tests read it)

    def reset(self, **kwargs) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self.last_noops = int(self.np_random.integers(1, self.noop_max + 1))
        for _ in range(self.last_noops):
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset()
        return obs, info


class MaxAndSkip(gym.Wrapper):
    """Repeats each action ``skip`` times, sums the rewards, and returns the pixel-wise maximum of
    the last two frames (removes Atari sprite flicker). Stops early when the episode ends."""

    def __init__(self, env: gym.Env, skip: int = 4):
        super().__init__(env)
        if skip < 1:
            raise ValueError(f"frame skip must be >= 1, got {skip}")
        self.skip = skip
        self._frames = np.zeros((2, *env.observation_space.shape), dtype=np.uint8)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        total_reward, terminated, truncated, info = 0.0, False, False, {}
        for i in range(self.skip):
            obs, reward, terminated, truncated, info = self.env.step(action)
            if i == self.skip - 2:
                self._frames[0] = obs
            if i == self.skip - 1:
                self._frames[1] = obs
            total_reward += float(reward)
            if terminated or truncated:
                break
        # As the reference: when the episode ends early, the max mixes the newest frame with
        # whatever the buffer held (the frame is terminal and never stored as an observation).
        return self._frames.max(axis=0), total_reward, terminated, truncated, info


class EpisodicLife(gym.Wrapper):
    """Training-time single-life episodes: losing a life reports ``terminated=True`` while the game
    goes on; the following ``reset`` takes one no-op step instead of restarting the game, unless the
    game was really over."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.lives = 0
        self.game_over = True

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        info["life_loss"] = terminated and not self.game_over
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs) -> tuple[np.ndarray, dict[str, Any]]:
        if self.game_over or kwargs.get("seed") is not None:
            obs, info = self.env.reset(**kwargs)
        else:
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:  # the no-op itself ended the game
                obs, info = self.env.reset()
        self.game_over = False
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info


class PixelsDict(gym.ObservationWrapper):
    """Outputs ``{"pixels": uint8 [3, H, W]}`` (channels first), the layout TorchRL's ``GymWrapper``
    maps straight to the ``"pixels"`` key, and adds ``lives`` to every info dict."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        h, w, c = env.observation_space.shape
        self.observation_space = gym.spaces.Dict(
            {"pixels": gym.spaces.Box(0, 255, (c, h, w), dtype=np.uint8)}
        )

    def observation(self, observation: np.ndarray) -> dict[str, np.ndarray]:
        return {"pixels": np.ascontiguousarray(observation.transpose(2, 0, 1))}

    def reset(self, **kwargs):
        obs, info = super().reset(**kwargs)
        info["lives"] = np.array([self.env.unwrapped.ale.lives()], dtype=np.int64)
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        info["lives"] = np.array([self.env.unwrapped.ale.lives()], dtype=np.int64)
        return obs, reward, terminated, truncated, info
