"""Exploration (per-env epsilon, temperature) and the collector over batched real envs."""

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torchrl.envs import ExplorationType, set_exploration_type

from torchrl_deltairis.collectors import EpisodeCollector, ExplorationPolicy
from torchrl_deltairis.envs import AtariConfig, make_batched_env


def _fixed_logits(logits: torch.Tensor) -> TensorDictModule:
    return TensorDictModule(lambda pixels: logits.expand(*pixels.shape[:-3], -1), in_keys=["pixels"],
                            out_keys=["logits"])


def _obs(batch: int) -> TensorDict:
    return TensorDict({"pixels": torch.zeros(batch, 3, 64, 64, dtype=torch.uint8)}, [batch])


def test_epsilon_is_drawn_per_environment():
    torch.manual_seed(0)
    policy = ExplorationPolicy(4, _fixed_logits(torch.tensor([100.0, 0, 0, 0])), epsilon=0.5)
    actions = torch.stack([policy(_obs(64))["action"] for _ in range(50)])  # [steps, envs]
    random_share = (actions != 0).float().mean().item()
    assert random_share == pytest.approx(0.5 * 3 / 4, abs=0.03)
    # In a single vector step some envs explore and others do not (the reference used one coin).
    mixed_steps = ((actions != 0).any(1) & (actions == 0).any(1)).float().mean().item()
    assert mixed_steps == 1.0


def test_temperature_scales_the_logits():
    torch.manual_seed(0)
    logits = torch.tensor([1.0, 0.0, 0.0, -1.0])
    for temperature in (0.5, 1.0, 3.0):
        policy = ExplorationPolicy(4, _fixed_logits(logits), epsilon=0.0, temperature=temperature)
        actions = policy(_obs(20_000))["action"]
        freqs = torch.bincount(actions, minlength=4).float() / actions.numel()
        assert torch.allclose(freqs, torch.softmax(logits / temperature, -1), atol=0.015)


def test_greedy_modes_and_uniform_first_epoch():
    policy = ExplorationPolicy(4, _fixed_logits(torch.tensor([0.0, 0.0, 5.0, 0.0])), epsilon=0.3)
    with set_exploration_type(ExplorationType.MODE):
        assert (policy(_obs(256))["action"] == 2).all()
    argmax = ExplorationPolicy(4, _fixed_logits(torch.tensor([0.0, 0.0, 5.0, 0.0])), epsilon=0.0,
                               should_sample=False)
    assert (argmax(_obs(256))["action"] == 2).all()

    def never(_pixels):
        raise AssertionError("the wrapped policy must not run when epsilon is 1")

    uniform = ExplorationPolicy(4, TensorDictModule(never, in_keys=["pixels"], out_keys=["logits"]), epsilon=1.0)
    torch.manual_seed(0)
    counts = torch.bincount(uniform(_obs(8000))["action"], minlength=4)
    assert counts.min() > 1800
    with pytest.raises(ValueError, match="epsilon"):
        ExplorationPolicy(4, epsilon=1.5)


class _ListStore:
    def __init__(self):
        self.batches = []

    def add_batch(self, td, keep=None):
        self.batches.append(td)


def test_collector_batches_reset_envs_independently_and_carry_excess():
    torch.manual_seed(0)
    env = make_batched_env(AtariConfig(id="Breakout", noop_max=1), 2, seed=0, parallel=False)
    store = _ListStore()
    collector = EpisodeCollector(env, ExplorationPolicy(4, epsilon=1.0), store, steps_per_batch=50, progress=False)
    stats = collector.collect(250)
    assert stats.num_steps == 300 and collector.excess_steps == 50  # whole batches of 2 x 50
    assert collector.collect(40).num_steps == 0  # covered by the excess
    data = torch.cat([b for b in store.batches], dim=1)
    assert data.batch_size == (2, 150)
    done = data["next", "done"].squeeze(-1)
    steps = data["next", "step_count"].squeeze(-1)
    assert done[0].nonzero().squeeze(-1).tolist() != done[1].nonzero().squeeze(-1).tolist()
    for env_id in range(2):
        for t in done[env_id, :-1].nonzero().squeeze(-1).tolist():
            assert steps[env_id, t + 1] == 1  # this env restarted on its own ...
            other = 1 - env_id
            if not done[other, t]:
                assert steps[other, t + 1] == steps[other, t] + 1  # ... while the other went on
    assert len(stats.returns) == int(done[:, :150].sum()) and all(length > 0 for length in stats.lengths)
    collector.shutdown()


def test_collector_writes_real_episodes_into_the_store(tmp_path):
    from torchrl_deltairis.data import EpisodeStore

    torch.manual_seed(0)
    env = make_batched_env(AtariConfig(id="Breakout", noop_max=1), 2, seed=0, parallel=False)
    store = EpisodeStore(tmp_path / "store", capacity=1000)
    seen = _ListStore()

    class _Tee:  # records what the collector hands over, then stores it
        def add_batch(self, td, keep=None):
            seen.add_batch(td.clone())
            store.add_batch(td)

    collector = EpisodeCollector(env, ExplorationPolicy(4, epsilon=1.0), _Tee(), steps_per_batch=40, progress=False)
    stats = collector.collect(400)
    collector.shutdown()
    data = torch.cat(seen.batches, dim=1)  # [2, 200]
    reopened = EpisodeStore(tmp_path / "store")
    assert reopened.num_steps == 400 and reopened.num_episodes == store.num_episodes
    finished = reopened.finished
    assert int(finished.sum()) == len(stats.lengths)
    assert sorted(reopened.lengths[finished].tolist()) == sorted(int(n) for n in stats.lengths)
    # The first episode of env 0 is its first steps, frame for frame.
    first_len = int(data["next", "done"][0].squeeze(-1).nonzero()[0])
    episode = reopened.episode(0)
    assert episode.batch_size == (first_len + 1,)
    assert torch.equal(episode["pixels"], data["pixels"][0, : first_len + 1])
    assert torch.equal(episode["action"], data["action"][0, : first_len + 1])
    assert bool(episode["terminated"][-1]) and not episode["terminated"][:-1].any()


def test_collection_summary_reports_crafter_success_rates_and_score():
    from torchrl_deltairis.collectors import CollectionStats
    from torchrl_deltairis.envs import CRAFTER_ACHIEVEMENTS

    wood = CRAFTER_ACHIEVEMENTS.index("collect_wood")
    first, second = torch.zeros(22, dtype=torch.bool), torch.zeros(22, dtype=torch.bool)
    first[wood] = second[wood] = True
    second[CRAFTER_ACHIEVEMENTS.index("wake_up")] = True
    summary = CollectionStats(num_steps=10, returns=[1.0, 2.0], lengths=[4, 6],
                              achievements=[first, second]).summary("train/")
    assert summary["train/achievements/collect_wood"] == 100.0
    assert summary["train/achievements/wake_up"] == 50.0
    assert summary["train/crafter_score"] == pytest.approx((101 * 51) ** (1 / 22) - 1)
    assert (summary["train/return_mean"], summary["train/length_mean"]) == (1.5, 5.0)


def test_collect_episodes_starts_fresh_and_counts_finished_episodes():
    torch.manual_seed(0)
    env = make_batched_env({"family": "gym", "id": "torchrl_deltairis/Reach-v0"}, 2, seed=0, parallel=False)
    store = _ListStore()
    store.end_open_episodes = lambda: None
    collector = EpisodeCollector(env, ExplorationPolicy(5, epsilon=1.0), store, steps_per_batch=4, progress=False)
    collector.collect(6)
    stats = collector.collect_episodes(5)
    assert len(stats.returns) == len(stats.lengths) == 5 and all(1 <= n <= 8 for n in stats.lengths)
    before = store.batches[0]
    running = ~before["next", "done"][:, -1, 0]
    assert running.any() and (before["next", "step_count"][:, -1, 0][running] > 0).all()  # mid-episode
    after_reset = store.batches[1]  # the first batch of the test collection (collect(6) took one)
    assert after_reset["step_count"][:, 0, 0].tolist() == [0, 0]  # both envs started a new episode
    collector.shutdown()
