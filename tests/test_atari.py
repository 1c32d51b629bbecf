"""The Atari preprocessing reproduces the reference's: each behaviour pinned."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from torchrl.envs.utils import check_env_specs

from torchrl_deltairis.envs import ATARI_100K_GAMES, AtariConfig, make_atari_env, make_env, resolve_atari_id
from torchrl_deltairis.envs.atari import make_atari_gymnasium
from torchrl_deltairis.envs.atari_wrappers import EpisodicLife, MaxAndSkip


def test_26_games_resolve_by_id_and_short_name():
    assert len(ATARI_100K_GAMES) == 26
    assert resolve_atari_id("Breakout") == "BreakoutNoFrameskip-v4"
    assert resolve_atari_id("breakout") == "BreakoutNoFrameskip-v4"
    assert resolve_atari_id("MsPacmanNoFrameskip-v4") == "MsPacmanNoFrameskip-v4"
    for bad in ("Tetris", "BreakoutNoFrameskip-v5", "Breakout-v5", ""):
        with pytest.raises(ValueError, match="Valid names: Alien / AlienNoFrameskip-v4") as err:
            resolve_atari_id(bad)
        assert repr(bad) in str(err.value)


def test_unknown_id_fails_before_building():
    with pytest.raises(ValueError, match="'Pongg'"):
        make_env({"id": "Pongg"})
    with pytest.raises(ValueError, match=r"Unknown key\(s\) \['sticky'\]"):
        make_env({"id": "Pong", "sticky": True})


def test_torchrl_env_specs_and_observations():
    env = make_atari_env(id="Breakout")
    check_env_specs(env)
    td = env.rollout(5, break_when_any_done=False)
    assert td["pixels"].dtype == torch.uint8 and td["pixels"].shape == (5, 3, 64, 64)
    assert td["action"].dtype == torch.int64 and int(env.action_spec.space.n) == 4
    assert td["next", "lives"].shape == (5, 1)
    env.close()


def test_reference_settings_by_default():
    env = make_atari_gymnasium(AtariConfig(id="Pong"))
    ale = env.unwrapped.ale
    assert ale.getFloat("repeat_action_probability") == 0.0  # no sticky actions
    assert env.action_space.n == 6  # Pong's minimal action set
    sticky = make_atari_gymnasium(AtariConfig(id="Pong", repeat_action_probability=0.25))
    assert sticky.unwrapped.ale.getFloat("repeat_action_probability") == 0.25
    with pytest.raises(ValueError, match="clip_reward"):
        make_atari_gymnasium(AtariConfig(id="Pong", clip_reward=True))


def _noops_after_reset(cfg: AtariConfig, seeds) -> list[int]:
    env = make_atari_gymnasium(cfg)
    bare = gym.make("PongNoFrameskip-v4", disable_env_checker=True)
    bare.reset(seed=0)
    offset = bare.unwrapped.ale.getEpisodeFrameNumber()  # frames ALE itself spends in a reset
    counts = []
    for seed in seeds:
        env.reset(seed=seed)
        frames = env.unwrapped.ale.getEpisodeFrameNumber() - offset
        counts.append(frames)
    return counts


def test_noop_count_range_train_and_test():
    counts = _noops_after_reset(AtariConfig(id="Pong", noop_max=30), range(60))
    assert min(counts) >= 1 and max(counts) <= 30
    assert len(set(counts)) > 10  # drawn, not fixed
    assert _noops_after_reset(AtariConfig(id="Pong", noop_max=1), range(5)) == [1] * 5


class _ScriptedFrames(gym.Env):
    """Frame i is filled with value i; reward i; terminates at frame `end`."""

    observation_space = gym.spaces.Box(0, 255, (2, 2, 3), dtype=np.uint8)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, end: int = 100):
        self.t, self.end = 0, end

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.zeros((2, 2, 3), np.uint8), {}

    def step(self, action):
        self.t += 1
        frame = np.full((2, 2, 3), self.t, np.uint8)
        frame[0, 0, 0] = 50 - self.t  # flicker: an older frame is brighter at this pixel
        return frame, float(self.t), self.t >= self.end, False, {}


def test_max_and_skip_pools_last_two_frames_and_sums_rewards():
    env = MaxAndSkip(_ScriptedFrames(), skip=4)
    env.reset()
    obs, reward, terminated, truncated, _ = env.step(0)
    assert reward == 1 + 2 + 3 + 4  # unclipped sum over the skipped frames
    assert obs[1, 1, 0] == 4 and obs[0, 0, 0] == 50 - 3  # max of frames 3 and 4, pixel by pixel
    env.step(0)
    env2 = MaxAndSkip(_ScriptedFrames(end=6), skip=4)
    env2.reset()
    env2.step(0)
    obs, reward, terminated, _, _ = env2.step(0)
    assert terminated and reward == 5 + 6  # stops at the end of the episode


def test_time_limit_counts_raw_frames_and_truncates():
    env = make_atari_gymnasium(AtariConfig(id="Pong", max_episode_steps=41, noop_max=1, done_on_life_loss=False))
    env.reset(seed=0)
    for step in range(1, 20):
        _, _, terminated, truncated, _ = env.step(0)
        if truncated:
            break
    assert step == 10 and truncated and not terminated  # 1 no-op + 10 x 4 frames = 41 raw frames


def test_life_loss_ends_training_episode_but_game_goes_on():
    env = make_atari_gymnasium(AtariConfig(id="Breakout", noop_max=1))
    assert isinstance(env.env, EpisodicLife)
    env.reset(seed=0)
    lives = env.unwrapped.ale.lives()
    rng = np.random.default_rng(0)
    for _ in range(2000):
        _, _, terminated, truncated, info = env.step(int(rng.integers(4)))
        if terminated:
            break
    assert terminated and not truncated and info["lives"][0] == lives - 1
    frame_before = env.unwrapped.ale.getEpisodeFrameNumber()
    env.reset()  # not a new game: one no-op step (4 frames) and the same lives
    assert env.unwrapped.ale.lives() == lives - 1
    assert env.unwrapped.ale.getEpisodeFrameNumber() == frame_before + 4
    test_env = make_atari_gymnasium(AtariConfig(id="Breakout", noop_max=1, done_on_life_loss=False))
    assert not isinstance(test_env.env, EpisodicLife)


def test_human_normalized_score_tables_match_the_shipped_reference_tables():
    import json

    from torchrl_deltairis.envs.atari import HUMAN_SCORES, RANDOM_SCORES, human_normalized_score

    root = Path(__file__).resolve().parents[1] / "benchmarks" / "reference_results"
    for table, name in ((HUMAN_SCORES, "HUMAN"), (RANDOM_SCORES, "RANDOM")):
        assert {g: [v] for g, v in table.items()} == json.loads((root / f"{name}.json").read_text())
    assert set(HUMAN_SCORES) == set(ATARI_100K_GAMES)
    assert human_normalized_score("Pong", 14.6) == pytest.approx(1.0)
    assert human_normalized_score("BreakoutNoFrameskip-v4", 1.7) == pytest.approx(0.0)
    assert human_normalized_score("breakout", 16.1) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="Unknown Atari 100k game"):
        human_normalized_score("Tetris", 0.0)
