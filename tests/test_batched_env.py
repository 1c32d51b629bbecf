"""Batched real envs: ParallelEnv and SerialEnv agree, and the same seed gives the same episodes."""

import torch
from torchrl.envs.utils import check_env_specs

from torchrl_deltairis.envs import make_batched_env


def _rollout(cfg, parallel: bool, seed: int, steps: int = 12):
    env = make_batched_env(cfg, 2, seed=seed, parallel=parallel)
    torch.manual_seed(0)
    td = env.rollout(steps, break_when_any_done=False)
    env.close()
    return td


def test_parallel_crafter_is_seeded_and_matches_serial():
    serial = _rollout({"id": "crafter"}, parallel=False, seed=3)
    parallel = _rollout({"id": "crafter"}, parallel=True, seed=3)
    other = _rollout({"id": "crafter"}, parallel=False, seed=4)
    assert serial.batch_size == (2, 12)
    assert torch.equal(serial["next", "pixels"], parallel["next", "pixels"])
    assert not torch.equal(serial["pixels"][0], serial["pixels"][1])  # env i is seeded with seed + i
    assert not torch.equal(serial["pixels"], other["pixels"])


def test_batched_atari_specs_and_seeding():
    env = make_batched_env({"id": "Pong"}, 2, seed=1, parallel=False)
    check_env_specs(env)
    env.close()
    a = _rollout({"id": "Pong"}, parallel=False, seed=1, steps=40)
    b = _rollout({"id": "Pong"}, parallel=False, seed=1, steps=40)
    assert torch.equal(a["next", "pixels"], b["next", "pixels"])
    assert {"is_init", "step_count", "episode_reward"} <= set(a.keys())
