"""It learns: whole runs of `train.py` (tokenizer, world model and actor-critic trained in imagination
only) on the learning checks of torchrl_deltairis/learning_checks.py, seed 0, the suite's thread
count (one under the README's command: 2 pytest-xdist workers; Recall is in test_learning_recall.py so
that the two checks run side by side). `env=reach params=reach` must reach >= 80 % of the optimum in
greedy test episodes (random play ~25 %); `env=recall params=recall` >= 90 % (any memoryless policy:
<= 50 %: the LSTM state must travel through the real envs' steps as it does in imagination). In both, the policy must not turn
deterministic before the world model has learned the rewards. `python benchmarks/learning_checks.py`
runs them (and Match, the Reach preset on other memoryless tasks) over 5 seeds and 1 and 2 threads: the
README's table. A couple of minutes each on 2 CPU cores."""

import math

import pytest

from torchrl_deltairis.envs.reach import Reach, random_success_rate
from torchrl_deltairis.learning_checks import CHECKS, run_check

pytestmark = pytest.mark.slow
REWARDS_LEARNED = 0.2  # nats: the world model's reward loss once it reads the rewards off the frames


def test_reach_random_play_is_clearly_below_the_optimum():
    optimum = Reach(grid=2, max_steps=2).optimal_return()
    assert random_success_rate(episodes=4000, grid=2, max_steps=2) < 0.4 * optimum


def assert_learned(result, num_actions: int) -> None:
    assert result.returncode == 0, result.stderr_tail
    check = result.check
    print(f"{result.name} seed {result.seed}: test curve {result.curve}, policy entropy {result.entropy}, "
          f"reward loss {result.reward_loss}")
    assert len(result.curve) >= 2, result.curve
    assert result.score >= check.bar * check.optimum, result.curve  # the better of the last two evaluations
    # no collapse before the world model knows the rewards: until its reward loss first falls below
    # REWARDS_LEARNED, the policy keeps more than half of the uniform policy's entropy
    learned = next((epoch for epoch, loss in result.reward_loss if loss <= REWARDS_LEARNED), math.inf)
    early = [(epoch, entropy) for epoch, entropy in result.entropy if epoch <= learned]
    assert all(entropy >= 0.5 * math.log(num_actions) for _, entropy in early), (learned, early)


def test_the_agent_learns_reach(tmp_path):
    assert CHECKS["reach"].overrides == ("env=reach", "params=reach")
    assert_learned(run_check("reach", tmp_path / "reach"), num_actions=5)
