"""A memoryless pixel task of Reach's kind with long episodes: name what the frame shows.

``Match``: every frame shows one of ``num_cues`` cues, drawn anew at each step from the env's seeded
generator; action ``i`` earns +1 if the frame shows cue ``i``, 0 otherwise. Episodes last
``max_steps`` steps (truncated). ``cue="color"`` draws the cue as a coloured square in the middle (the
colours of :mod:`torchrl_deltairis.envs.recall`); ``cue="side"`` lights one of ``num_cues`` vertical
bands in one colour, so that only the position tells the cues apart.

The current frame holds everything there is to know: the optimal return is ``max_steps``, a policy
that ignores the frame gets ``max_steps / num_cues`` on average, and so does a deterministic policy
that answers the same whatever it sees: what an agent whose policy collapsed early scores. The
learning checks use it beside Reach (same preset, other rewards and episode lengths). Registered with
gymnasium as ``torchrl_deltairis/Match-v0``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from torchrl_deltairis.envs.recall import CUE_COLORS

MATCH_ID = "torchrl_deltairis/Match-v0"
_BACKGROUND = np.array([30, 30, 60], dtype=np.uint8)
_BAND = np.array([230, 200, 40], dtype=np.uint8)
CUES = ("color", "side")


class Match(gym.Env):
    """Name the cue of every frame: pixels [size, size, 3] uint8 (HWC), ``num_cues`` actions."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, num_cues: int = 2, max_steps: int = 20, cue: str = "color", size: int = 64,
                 render_mode: str | None = None):
        if not 2 <= num_cues <= len(CUE_COLORS):
            raise ValueError(f"num_cues must be in [2, {len(CUE_COLORS)}], got {num_cues}")
        if cue not in CUES:
            raise ValueError(f"cue={cue!r}; expected one of {list(CUES)}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.num_cues, self.max_steps, self.cue_kind, self.size = num_cues, max_steps, cue, size
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), dtype=np.uint8)
        self.action_space = gym.spaces.Discrete(num_cues)
        self.cue = 0
        self._t = 0

    def _frame(self) -> np.ndarray:
        frame = np.broadcast_to(_BACKGROUND, (self.size, self.size, 3)).copy()
        if self.cue_kind == "color":
            margin = self.size // 4
            frame[margin:-margin, margin:-margin] = CUE_COLORS[self.cue]
        else:
            width = self.size // self.num_cues
            frame[:, self.cue * width:(self.cue + 1) * width] = _BAND
        return frame

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._t = 0
        self.cue = int(self.np_random.integers(self.num_cues))
        return self._frame(), {}

    def step(self, action: int):
        if not self.action_space.contains(int(action)):
            raise ValueError(f"action {action!r} is not in 0..{self.action_space.n - 1}")
        reward = float(int(action) == self.cue)
        self._t += 1
        self.cue = int(self.np_random.integers(self.num_cues))
        return self._frame(), reward, False, self._t >= self.max_steps, {}

    def render(self) -> np.ndarray:
        return self._frame()

    def optimal_return(self) -> float:
        return float(self.max_steps)

    def blind_return(self) -> float:
        """The expected return of any policy that ignores the frame (a collapsed, constant one too)."""
        return self.max_steps / self.num_cues


if MATCH_ID not in gym.registry:
    gym.register(MATCH_ID, entry_point=Match)
