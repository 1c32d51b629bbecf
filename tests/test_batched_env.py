"""Batched real envs: ParallelEnv and SerialEnv agree, and the same seed gives the same episodes."""

import pytest
import torch
from torchrl.envs.utils import check_env_specs

from torchrl_deltairis.envs import make_batched_env, make_env
from torchrl_deltairis.envs.reach import REACH_ID
from torchrl_deltairis.policy import recurrent_state_primer


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


@pytest.mark.parametrize("cfg", [{"id": "crafter"}, {"id": "Pong"}, {"family": "gym", "id": REACH_ID, "size": 32}],
                         ids=["crafter", "atari", "gym"])
@pytest.mark.parametrize("maker", ["make_env", "make_batched_env", "make_batched_env+primer"])
def test_every_real_env_passes_check_env_specs_with_the_same_transforms(cfg, maker):
    """make_env and make_batched_env hand out the same transforms (is_init, step count, episode return),
    with or without the policy's LSTM state primer."""
    if maker == "make_env":
        env = make_env(cfg, seed=0)
    else:
        env = make_batched_env(cfg, 2, seed=0, parallel=False)
        if maker.endswith("primer"):
            env.append_transform(recurrent_state_primer(8))
    check_env_specs(env)
    assert {"is_init", "step_count", "episode_reward"} <= set(env.observation_spec.keys())
    env.close()


def test_a_stock_collector_adds_nothing_to_our_real_envs():
    """TorchRL 0.15's auto_register_policy_transforms=True: the real env with the trunk's primer already
    has what the recurrent policy needs (is_init, its state keys): the collector appends nothing, gives
    the batches it gives with False, and 0.14's default warns of nothing."""
    import warnings

    from torchrl.collectors import Collector

    from conftest import small_models
    from torchrl_deltairis.collectors import ExplorationPolicy
    from torchrl_deltairis.policy import ActorCriticTrunk

    net = small_models("crafter_small").actor_critic.model
    batches = []
    for flag in (True, False, None):
        env = make_batched_env({"id": "crafter"}, 2, seed=0, parallel=False)
        trunk = ActorCriticTrunk(net, write_values=False)
        env.append_transform(trunk.make_tensordict_primer())
        policy = ExplorationPolicy(17, trunk, epsilon=0.0, temperature=1.0)
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            collector = Collector(env, policy, frames_per_batch=8, total_frames=8,
                                  auto_register_policy_transforms=flag)
            assert collector.env is env
            batches.append(next(iter(collector)))
        collector.shutdown()
    for other in batches[1:]:
        for key in batches[0].keys(True, True):
            if not (isinstance(key, tuple) and key[0] == "collector"):
                assert torch.equal(other[key], batches[0][key]), key
