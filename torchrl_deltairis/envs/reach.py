"""A tiny pixel task that shows, in minutes on a CPU, that the whole agent learns.

``Reach``: a ``grid x grid`` board drawn as ``size x size`` RGB (64 by default); the agent (a white
square) must walk onto the target (a green square) within ``max_steps`` moves. Reward +1 on reaching
the target (the episode terminates), 0 otherwise; the time limit truncates. Actions: 0 no-op, 1 up,
2 down, 3 left, 4 right.
Start and target cells are drawn from the env's seeded generator, never equal.

The optimal return is 1; a uniform random policy scores well below (see ``random_success_rate``),
so a learning test can tell the two apart. Registered with gymnasium as ``torchrl_deltairis/Reach-v0``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

REACH_ID = "torchrl_deltairis/Reach-v0"
_MOVES = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]])
_AGENT_COLOR = np.array([255, 255, 255], dtype=np.uint8)
_TARGET_COLOR = np.array([40, 200, 60], dtype=np.uint8)
_BACKGROUND = np.array([30, 30, 60], dtype=np.uint8)


class Reach(gym.Env):
    """Walk onto the target: pixels [size, size, 3] uint8 (HWC, like Atari frames), 5 actions."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, grid: int = 4, max_steps: int = 8, size: int = 64, render_mode: str | None = None):
        if grid < 2 or size % grid:
            raise ValueError(f"grid must be >= 2 and divide size={size}, got grid={grid}")
        if max_steps < 2 * (grid - 1):
            raise ValueError(f"max_steps={max_steps} < {2 * (grid - 1)}: some targets would be unreachable")
        self.grid, self.max_steps, self.size, self.render_mode = grid, max_steps, size, render_mode
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), dtype=np.uint8)
        self.action_space = gym.spaces.Discrete(len(_MOVES))
        self._agent = np.zeros(2, dtype=np.int64)
        self._target = np.ones(2, dtype=np.int64)
        self._t = 0

    def _frame(self) -> np.ndarray:
        cell = self.size // self.grid
        frame = np.broadcast_to(_BACKGROUND, (self.size, self.size, 3)).copy()
        for (row, col), color in ((self._target, _TARGET_COLOR), (self._agent, _AGENT_COLOR)):
            frame[row * cell + 2:(row + 1) * cell - 2, col * cell + 2:(col + 1) * cell - 2] = color
        return frame

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        cells = self.np_random.choice(self.grid * self.grid, size=2, replace=False)
        self._agent = np.array(divmod(int(cells[0]), self.grid))
        self._target = np.array(divmod(int(cells[1]), self.grid))
        self._t = 0
        return self._frame(), {}

    def step(self, action: int):
        if not self.action_space.contains(int(action)):
            raise ValueError(f"action {action!r} is not in 0..{self.action_space.n - 1}")
        self._agent = np.clip(self._agent + _MOVES[int(action)], 0, self.grid - 1)
        self._t += 1
        reached = bool((self._agent == self._target).all())
        truncated = not reached and self._t >= self.max_steps
        return self._frame(), float(reached), reached, truncated, {}

    def render(self) -> np.ndarray:
        return self._frame()

    def optimal_return(self) -> float:
        return 1.0


def random_success_rate(episodes: int = 2000, seed: int = 0, **kwargs) -> float:
    """Mean return of the uniform random policy (the learning test's floor)."""
    env, rng = Reach(**kwargs), np.random.default_rng(seed)
    total = 0.0
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        done = False
        while not done:
            _, reward, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
            total += reward
            done = terminated or truncated
    return total / episodes


if REACH_ID not in gym.registry:
    gym.register(REACH_ID, entry_point=Reach)
