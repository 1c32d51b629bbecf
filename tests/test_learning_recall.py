"""The Recall learning check (tests/test_learning.py says what the checks assert), in a file of its own:
pytest-xdist hands out whole files (``--dist loadfile``), and the two checks, minutes each, then start
side by side on the two workers."""

import pytest

from test_learning import assert_learned
from torchrl_deltairis.envs.recall import Recall, memoryless_optimum
from torchrl_deltairis.learning_checks import CHECKS, run_check

pytestmark = pytest.mark.slow


def test_recall_needs_memory():
    """Every frame after the cue is the same whatever the cue: a memoryless policy answers blind."""
    frames = {}
    for cue in (0, 1):
        env = Recall(delay=1, num_cues=2)
        env.reset(seed=0)
        env.cue = cue
        seen, done = [env.render()], False
        while not done:
            frame, reward, done, _, _ = env.step(cue)
            seen.append(frame)
        assert reward == 1.0
        frames[cue] = seen
    assert (frames[0][0] != frames[1][0]).any()  # the cue ...
    assert all((a == b).all() for a, b in zip(frames[0][1:], frames[1][1:]))  # ... and nothing after it
    assert memoryless_optimum(2) == 0.5


def test_the_agent_learns_recall_with_its_memory(tmp_path):
    assert CHECKS["recall"].overrides == ("env=recall", "params=recall")
    assert_learned(run_check("recall", tmp_path / "recall"), num_actions=2)
