"""Any gymnasium env with image observations (env=gym), and the shipped Reach and Match tasks."""

import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest
import torch
from torchrl.envs.utils import check_env_specs

from torchrl_deltairis.envs import MATCH_ID, REACH_ID, Match, Reach, env_config, make_batched_env, make_env
from torchrl_deltairis.envs.reach import random_success_rate


def test_reach_is_solvable_and_random_play_is_far_from_optimal():
    env = Reach()
    env.reset(seed=0)
    agent, target = env._agent.copy(), env._target.copy()
    moves = [2 if target[0] > agent[0] else 1] * abs(int(target[0] - agent[0]))
    moves += [4 if target[1] > agent[1] else 3] * abs(int(target[1] - agent[1]))
    for i, action in enumerate(moves):
        _, reward, terminated, truncated, _ = env.step(action)
        assert (reward, terminated) == ((1.0, True) if i == len(moves) - 1 else (0.0, False))
    assert random_success_rate(episodes=500) < 0.4 * env.optimal_return()


def test_gym_family_resizes_images_and_passes_specs():
    env = make_env({"family": "gym", "id": REACH_ID, "size": 32})
    check_env_specs(env)
    td = env.rollout(3)
    assert td["pixels"].shape == (3, 3, 32, 32) and td["pixels"].dtype == torch.uint8
    batched = make_batched_env({"family": "gym", "id": REACH_ID}, 2, seed=0, parallel=False)
    assert batched.rollout(4, break_when_any_done=False)["pixels"].shape == (2, 4, 3, 64, 64)


def test_user_registration_through_imports(tmp_path, monkeypatch):
    (tmp_path / "my_envs.py").write_text(textwrap.dedent("""
        import gymnasium as gym
        from torchrl_deltairis.envs.reach import Reach
        gym.register("MyGray-v0", entry_point=lambda: gym.wrappers.TransformObservation(
            Reach(grid=2, max_steps=2), lambda o: o[..., 0], gym.spaces.Box(0, 255, (64, 64), dtype="uint8")))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="Unknown gymnasium env id 'MyGray-v0'"):
        env_config({"family": "gym", "id": "MyGray-v0"})
    env = make_env({"family": "gym", "id": "MyGray-v0", "imports": ["my_envs"]})
    pixels = env.reset()["pixels"]
    assert pixels.shape == (3, 64, 64) and torch.equal(pixels[0], pixels[1])  # gray to RGB
    sys.modules.pop("my_envs", None)


def test_gym_family_errors_name_the_problem():
    with pytest.raises(ValueError, match="close matches: .*CartPole-v1"):
        env_config({"family": "gym", "id": "CartPole-v9"})
    with pytest.raises(ValueError, match="uint8 images"):
        make_env({"family": "gym", "id": "CartPole-v1"})
    with pytest.raises(ValueError, match="cannot import 'no_such_module'"):
        env_config({"family": "gym", "id": REACH_ID, "imports": ["no_such_module"]})
    with pytest.raises(ValueError, match="valid families: \\['atari', 'crafter', 'gym'\\]"):
        env_config({"family": "mujoco", "id": "x"})
    assert isinstance(gym.make(REACH_ID).unwrapped, Reach) and np.uint8 == Reach().observation_space.dtype


@pytest.mark.parametrize("cue", ["color", "side"])
def test_match_rewards_naming_the_cue_and_blind_play_gets_half(cue):
    """Match: the frame tells the cue (two cues, two frames); the right action earns 1 at every step,
    and a policy that ignores the frame (a constant one too) earns max_steps / num_cues on average."""
    env = Match(num_cues=2, max_steps=20, cue=cue, size=32)
    frame, _ = env.reset(seed=0)
    seen, total_right, total_constant = {}, 0.0, 0.0
    for _ in range(400):
        seen.setdefault(env.cue, frame)
        assert (seen[env.cue] == frame).all()
        right = env.cue
        frame, reward, terminated, truncated, _ = env.step(right)
        assert reward == 1.0 and not terminated
        total_right += reward
        if truncated:
            frame, _ = env.reset()
    assert set(seen) == {0, 1} and (seen[0] != seen[1]).any()
    env.reset(seed=1)
    for _ in range(2000):
        _, reward, _, truncated, _ = env.step(0)
        total_constant += reward
        if truncated:
            env.reset()
    assert abs(total_constant / 100 - env.blind_return()) < 1.0  # 100 episodes of 20 steps
    assert env.optimal_return() == 20 and env.blind_return() == 10
    assert isinstance(gym.make(MATCH_ID).unwrapped, Match)
