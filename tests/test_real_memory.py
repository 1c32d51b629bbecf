"""The policy's memory in the real envs, wired as a run wires it (``build.data.make_collector``).

- In collected batches the state a step starts from is the state the previous step wrote, across
  batches and across ``collect`` calls, except where an episode starts (zeros) and at the start of a
  collect, where it is the burn-in over the last stored frames of the running episode; serial and
  parallel envs, training and test collection.
- Test collection burns in (on zero frames, fresh episodes) and is unbiased: every env plays a quota
  of episodes fixed in advance; an env whose episode length is its return shows the collected mean is
  the mean of exactly those episodes.
- Devices: every transfer goes through the stock collector's env/policy/storing devices, which know
  all the policy's outputs (the LSTM state among them) before the first step.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import DATA
from omegaconf import OmegaConf
from tensordict import TensorDict

from torchrl_deltairis import keys
from torchrl_deltairis.collectors import EpisodeCollector
from torchrl_deltairis.data import EpisodeStore
from torchrl_deltairis.envs import REACH_ID, make_batched_env
from torchrl_deltairis.build.data import make_collector
from torchrl_deltairis.policy import ActorCriticTrunk, CollectBurnIn, burn_in
from torchrl_deltairis.reference import DeltaIrisModels, configs_from_reference

BURN_IN = 3


def _trunk(num_actions: int) -> ActorCriticTrunk:
    config = torch.load(DATA / "atari_small.pt", weights_only=True)["config"]
    torch.manual_seed(0)
    net = DeltaIrisModels(configs_from_reference(config, num_actions=num_actions)).actor_critic.model.eval()
    return ActorCriticTrunk(net, write_values=False)


def _collection(burn_in_length: int = BURN_IN):
    return OmegaConf.create({"config": {"temperature": 1.0, "should_sample": True, "burn_in_length": burn_in_length}})


def _collector(tmp_path, env_cfg, num_envs, parallel, *, epsilon, steps_per_batch=5, name="store"):
    env = make_batched_env(env_cfg, num_envs, seed=0, parallel=parallel)
    trunk = _trunk(int(env.action_spec.space.n))
    store = EpisodeStore(tmp_path / name, capacity=10_000)
    collector = make_collector(env, trunk, store, _collection(), steps_per_batch=steps_per_batch,
                               device=torch.device("cpu"), epsilon=epsilon)
    collector.progress = False
    return collector, trunk, store


def _record_batches(collector):
    batches = []
    original = collector.store.add_batch

    def add_batch(batch, keep=None):
        batches.append(batch.clone())
        return original(batch, keep=keep)

    collector.store.add_batch = add_batch
    return batches


def _check_carried(batches, skip_first: bool):
    """Within and across consecutive batches: state_t == next_state_{t-1}, except at episode starts
    (zeros); returns how many steps carried a state."""
    run = torch.cat(batches, dim=1)  # [E, T] consecutive steps of each env
    h, next_h = run[keys.RECURRENT_STATE_H], run["next", keys.RECURRENT_STATE_H]
    c, next_c = run[keys.RECURRENT_STATE_C], run["next", keys.RECURRENT_STATE_C]
    starts = run[keys.IS_INIT][..., 0]
    assert torch.equal(starts, run["step_count"][..., 0] == 0)
    first = 1 if skip_first else 0
    carried = ~starts[:, 1:]
    carried[:, :first] = False
    assert torch.equal(h[:, 1:][carried], next_h[:, :-1][carried])
    assert torch.equal(c[:, 1:][carried], next_c[:, :-1][carried])
    fresh = starts.clone()
    fresh[:, :1] = False  # the first step of a collect holds the burn-in, not the primer's zeros
    assert not h[fresh].any() and not c[fresh].any()
    assert h[:, 1:][carried].abs().sum(-1).min() > 0  # a real state travels, not zeros
    return int(carried.sum())


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
def test_training_collection_carries_the_state_and_burns_in_at_each_collect(tmp_path, parallel):
    collector, trunk, store = _collector(tmp_path, {"family": "gym", "id": REACH_ID}, 2, parallel, epsilon=1.0)
    try:
        collector.collect(10)  # the uniform first epoch: no network call, no burn-in
        collector.policy.epsilon = 0.0
        burn = collector.before_collect
        frames = burn.frames(2, (3, 64, 64))  # the newest stored frames of each running episode
        for env, episode in enumerate(store.open_episodes.tolist()):
            if episode >= 0:
                stored = store.episode(episode)[keys.PIXELS][-BURN_IN:]
                assert torch.equal(frames[env, BURN_IN - stored.shape[0]:], stored)
        first = _record_batches(collector)
        collector.collect(20)
        assert len(first) == 2
        expected_h, expected_c = burn_in(trunk.net, frames)
        start = first[0][:, 0]
        torch.testing.assert_close(start[keys.RECURRENT_STATE_H], expected_h)
        torch.testing.assert_close(start[keys.RECURRENT_STATE_C], expected_c)
        assert _check_carried(first, skip_first=True) > 10
        # the next collect burns in again, from the then running episodes, under the current weights
        frames = burn.frames(2, (3, 64, 64))
        second = _record_batches(collector)
        collector.collect(10)
        torch.testing.assert_close(second[0][:, 0][keys.RECURRENT_STATE_H], burn_in(trunk.net, frames)[0])
        _check_carried(second, skip_first=True)
    finally:
        collector.shutdown()


def test_without_the_carried_state_the_batches_would_show_it(tmp_path):
    """The check above can fail: with the primer's zeros at every step (no carry) it does."""
    collector, _, _ = _collector(tmp_path, {"family": "gym", "id": REACH_ID}, 2, False, epsilon=0.0)
    batches = _record_batches(collector)
    collector.collect(10)
    collector.shutdown()
    broken = [b.clone().set(keys.RECURRENT_STATE_H, torch.zeros_like(b[keys.RECURRENT_STATE_H])) for b in batches]
    with pytest.raises(AssertionError):
        _check_carried(broken, skip_first=True)


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
def test_test_collection_burns_in_on_zero_frames_and_carries_the_state(tmp_path, parallel):
    collector, trunk, _ = _collector(tmp_path, {"family": "gym", "id": REACH_ID}, 2, parallel, epsilon=0.0)
    try:
        collector.collect(10)
        batches = _record_batches(collector)
        stats = collector.collect_episodes(6)
        assert len(stats.returns) == 6
        zero_h, zero_c = burn_in(trunk.net, torch.zeros(2, BURN_IN, 3, 64, 64, dtype=torch.uint8))
        start = batches[0][:, 0]
        assert start[keys.IS_INIT].all()  # fresh episodes everywhere ...
        torch.testing.assert_close(start[keys.RECURRENT_STATE_H], zero_h)  # ... from the reference's burn-in
        torch.testing.assert_close(start[keys.RECURRENT_STATE_C], zero_c)
        _check_carried(batches, skip_first=True)
    finally:
        collector.shutdown()


# ---------------------------------------------------------------- unbiased test scores
LENGTHS_ID = "torchrl_deltairis_tests/LengthIsReturn-v0"


class LengthIsReturn(gym.Env):
    """Each episode lasts L steps (drawn at reset: 1 or 12), reward 1 per step: the return is L.
    Every instance logs the length of each episode it starts."""

    observation_space = gym.spaces.Box(0, 255, (64, 64, 3), dtype=np.uint8)
    action_space = gym.spaces.Discrete(2)

    def __init__(self):
        self.log: list[int] = []
        self._left = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._left = int(self.np_random.choice([1, 12]))
        self.log.append(self._left)
        return np.zeros((64, 64, 3), dtype=np.uint8), {}

    def step(self, action):
        self._left -= 1
        return np.zeros((64, 64, 3), dtype=np.uint8), 1.0, self._left == 0, False, {}


if LENGTHS_ID not in gym.registry:
    gym.register(LENGTHS_ID, entry_point=LengthIsReturn)


def _gym_envs(collector):
    return [sub._env.unwrapped for sub in collector.env.base_env._envs]


def test_episode_quotas_split_evenly():
    assert EpisodeCollector.episode_quotas(32, 8).tolist() == [4] * 8
    assert EpisodeCollector.episode_quotas(7, 3).tolist() == [3, 2, 2]
    with pytest.raises(ValueError, match="num_episodes"):
        EpisodeCollector.episode_quotas(0, 2)


def test_test_scores_are_the_mean_of_the_episodes_each_env_was_given(tmp_path):
    collector, _, _ = _collector(tmp_path, {"family": "gym", "id": LENGTHS_ID}, 4, False, epsilon=0.0,
                                 steps_per_batch=7)
    envs = _gym_envs(collector)
    collector.collect(30)
    quotas = EpisodeCollector.episode_quotas(10, 4).tolist()  # [3, 3, 2, 2]
    before = [len(env.log) for env in envs]
    stats = collector.collect_episodes(10)
    # the episodes each env started after the reset, its quota of them, long ones included
    given = [length for env, n, q in zip(envs, before, quotas) for length in env.log[n:n + q]]
    assert sorted(stats.returns) == sorted(float(x) for x in given)
    assert sorted(stats.lengths) == sorted(given)
    assert stats.num_steps == sum(given)
    assert 12 in given and 1 in given
    # the first 10 episodes to finish would have been biased towards the short ones
    assert np.mean(given) > np.mean(sorted(given)[:len(given) - 2])
    collector.shutdown()


def test_the_test_store_holds_exactly_the_quota_episodes(tmp_path):
    collector, _, store = _collector(tmp_path, {"family": "gym", "id": LENGTHS_ID}, 3, False, epsilon=0.0,
                                     steps_per_batch=6)
    envs = _gym_envs(collector)
    stats = collector.collect_episodes(5)
    collector.shutdown()
    assert store.num_episodes == 5 and bool(store.finished.all())
    assert sorted(store.lengths.tolist()) == sorted(stats.lengths)
    assert store.num_steps == stats.num_steps == sum(stats.lengths)
    assert all(len(env.log) >= q for env, q in zip(envs, [2, 2, 1]))


# ---------------------------------------------------------------- devices
def test_every_transfer_goes_through_the_collectors_devices(tmp_path):
    collector, trunk, _ = _collector(tmp_path, {"family": "gym", "id": REACH_ID}, 2, False, epsilon=1.0)
    try:
        stock = collector.collector
        assert (stock.env_device, stock.policy_device, stock.storing_device) == (torch.device("cpu"),) * 3
        # Known before the first step, even while epsilon = 1 never calls the network: what the stock
        # collector copies back from the policy's device into the step (on a GPU, a state missing
        # here would be dropped at every step).
        outputs = set(collector.collector._policy_output_keys)
        assert {keys.ACTION, keys.LOGITS, ("next", keys.RECURRENT_STATE_H),
                ("next", keys.RECURRENT_STATE_C)} <= outputs
        for key in (keys.RECURRENT_STATE_H, keys.RECURRENT_STATE_C):  # in the env specs: step_mdp carries it
            assert key in collector.env.observation_spec.keys()
    finally:
        collector.shutdown()


def test_make_collector_puts_the_policy_on_the_models_device(tmp_path, monkeypatch):
    captured = {}
    monkeypatch.setattr(EpisodeCollector, "__init__", lambda self, *a, **kw: captured.update(kw))
    env = make_batched_env({"family": "gym", "id": REACH_ID}, 1, seed=0, parallel=False)
    make_collector(env, _trunk(5), EpisodeStore(tmp_path / "s", capacity=10), _collection(), steps_per_batch=2,
                   device=torch.device("meta"), epsilon=0.0)
    assert captured["policy_device"] == torch.device("meta")
    env.close()


def test_the_burn_in_runs_on_the_networks_device():
    trunk = _trunk(5)
    trunk.net.to("meta")  # no computation is possible there: a CPU tensor reaching the network would fail

    class _Store:
        open_episodes = torch.tensor([-1, -1])

    state = CollectBurnIn(trunk, _Store(), 2)(2, (3, 64, 64))
    assert isinstance(state, TensorDict) and state.device == torch.device("meta")
    assert state[keys.RECURRENT_STATE_H].device.type == "meta" and state.batch_size == (2,)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
def test_on_a_gpu_the_state_comes_back_from_the_policys_device(tmp_path, parallel):
    """Envs and store on the CPU, the policy on CUDA: the collected batches still carry the state."""
    env = make_batched_env({"family": "gym", "id": REACH_ID}, 2, seed=0, parallel=parallel)
    trunk = _trunk(int(env.action_spec.space.n))
    trunk.net.to("cuda")
    store = EpisodeStore(tmp_path / "store", capacity=10_000)
    collector = make_collector(env, trunk, store, _collection(), steps_per_batch=5, device=torch.device("cuda"),
                               epsilon=1.0)
    collector.progress = False
    try:
        collector.collect(10)
        collector.policy.epsilon = 0.0
        frames = collector.before_collect.frames(2, (3, 64, 64))
        batches = _record_batches(collector)
        collector.collect(20)
        assert all(b.device == torch.device("cpu") for b in batches)
        torch.testing.assert_close(batches[0][:, 0][keys.RECURRENT_STATE_H],
                                   burn_in(trunk.net, frames.cuda())[0].cpu(), atol=1e-5, rtol=1e-5)
        _check_carried(batches, skip_first=True)
        stats = collector.collect_episodes(4)
        assert len(stats.returns) == 4
    finally:
        collector.shutdown()


def test_without_burn_in_each_collect_starts_from_zeros_and_epsilon_one_writes_nothing():
    """As the reference, which resets the LSTM at every collect and burns in only when it acts."""
    trunk = _trunk(5)

    class _Store:
        open_episodes = torch.tensor([3, -1])

    class _Policy:
        epsilon = 0.0

    policy = _Policy()
    state = CollectBurnIn(trunk, _Store(), 0, policy=policy)(2, (3, 64, 64))
    assert state.batch_size == (2,) and not state[keys.RECURRENT_STATE_H].any()
    policy.epsilon = 1.0
    assert CollectBurnIn(trunk, _Store(), 2, policy=policy)(2, (3, 64, 64)) is None
