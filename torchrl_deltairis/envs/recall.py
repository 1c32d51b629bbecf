"""A tiny pixel task that cannot be solved without memory: the learning check of the policy's LSTM.

``Recall``: the first frame shows a coloured cue (one of ``num_cues`` colours, drawn at reset), then
``delay`` blank frames follow, then a grey query frame. The action taken on the query frame is the
answer: reward +1 if it names the cue (action ``i`` for colour ``i``), 0 otherwise, and the episode
terminates. Actions on the other frames do nothing. Every frame after the first is the same whatever
the cue, so a policy that sees only the current frame picks its answer blind: any memoryless policy
succeeds with probability ``1 / num_cues`` at most (:func:`memoryless_optimum`), a policy that
remembers the first frame always. Registered with gymnasium as ``torchrl_deltairis/Recall-v0``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

RECALL_ID = "torchrl_deltairis/Recall-v0"
CUE_COLORS = np.array([[220, 40, 40], [40, 90, 230], [40, 200, 60], [230, 200, 40]], dtype=np.uint8)
_BACKGROUND = np.array([30, 30, 60], dtype=np.uint8)
_QUERY = np.array([150, 150, 150], dtype=np.uint8)


class Recall(gym.Env):
    """Cue, ``delay`` blank frames, query: pixels [size, size, 3] uint8 (HWC), ``num_cues`` actions."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, delay: int = 1, num_cues: int = 2, size: int = 64, render_mode: str | None = None):
        if delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay}")
        if not 2 <= num_cues <= len(CUE_COLORS):
            raise ValueError(f"num_cues must be in [2, {len(CUE_COLORS)}], got {num_cues}")
        self.delay, self.num_cues, self.size, self.render_mode = delay, num_cues, size, render_mode
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), dtype=np.uint8)
        self.action_space = gym.spaces.Discrete(num_cues)
        self.cue = 0
        self._t = 0

    @property
    def episode_length(self) -> int:
        return self.delay + 2

    def _frame(self) -> np.ndarray:
        frame = np.broadcast_to(_BACKGROUND, (self.size, self.size, 3)).copy()
        margin = self.size // 8
        if self._t == 0:
            frame[margin:-margin, margin:-margin] = CUE_COLORS[self.cue]
        elif self._t == self.delay + 1:
            frame[margin:-margin, margin:-margin] = _QUERY
        return frame

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.cue = int(self.np_random.integers(self.num_cues))
        self._t = 0
        return self._frame(), {}

    def step(self, action: int):
        if not self.action_space.contains(int(action)):
            raise ValueError(f"action {action!r} is not in 0..{self.action_space.n - 1}")
        answered = self._t == self.delay + 1
        reward = float(answered and int(action) == self.cue)
        self._t += 1
        return self._frame(), reward, answered, False, {}

    def render(self) -> np.ndarray:
        return self._frame()

    def optimal_return(self) -> float:
        return 1.0


def memoryless_optimum(num_cues: int = 2) -> float:
    """The best mean return of any policy that sees only the current frame: the query frame does not
    depend on the cue, so its answer is right with probability 1 / num_cues."""
    return 1.0 / num_cues


if RECALL_ID not in gym.registry:
    gym.register(RECALL_ID, entry_point=Recall)
