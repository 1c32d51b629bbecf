"""Δ-IRIS segment sampling: padding and masks, window content, count-based episode weights, seeding."""


import pytest
import torch
from tensordict import TensorDict

from torchrl_deltairis import keys
from torchrl_deltairis.data import EpisodeCounts, EpisodeStore, SegmentSampler, make_segment_buffer


def episode_batch(episode: int, length: int, frame: int = 8) -> TensorDict:
    """One whole episode [length] whose every value encodes (episode, step)."""
    step = torch.arange(length)
    pixels = ((episode * 31 + step) % 251 + 1).to(torch.uint8)  # never 0: padding is recognisable
    done = step == length - 1
    return TensorDict(
        {
            keys.PIXELS: pixels[:, None, None, None].expand(length, 3, frame, frame).clone(),
            keys.ACTION: step % 17,
            keys.NEXT_REWARD: (1000.0 * episode + step).unsqueeze(-1),
            keys.NEXT_TERMINATED: done.unsqueeze(-1),
            keys.NEXT_TRUNCATED: torch.zeros(length, 1, dtype=torch.bool),
        },
        batch_size=[length],
    )


def make_store(tmp_path, lengths, frame: int = 8) -> EpisodeStore:
    store = EpisodeStore(tmp_path / "store", capacity=sum(lengths) + 100)
    for episode, length in enumerate(lengths):
        store.add_batch(episode_batch(episode, length, frame))
    return store


def make_sampler(store, component="tokenizer", length=10, beyond=True, alpha=5.0, seed=0, counts=None):
    counts = counts if counts is not None else EpisodeCounts()
    return SegmentSampler(
        store, counts, component, length, can_sample_beyond_end=beyond, alpha=alpha, seed=seed
    )


def check_windows(batch: TensorDict, lengths: torch.Tensor) -> None:
    """Assert that every window holds consecutive steps of one episode and zeros elsewhere."""
    mask = batch[keys.MASK_PADDING]
    num, length = mask.shape
    assert mask.any(dim=1).all(), "every window has a real step"
    first = mask.int().argmax(dim=1)
    real = torch.arange(length) - first[:, None] + batch[keys.STEP].gather(1, first[:, None])  # step if real
    assert torch.equal(mask, (real >= 0) & (real < lengths[batch[keys.EPISODE].amax(1)][:, None]))
    episode = batch[keys.EPISODE].amax(dim=1, keepdim=True).expand(num, length)
    expected_pixels = ((episode * 31 + real) % 251 + 1) * mask
    assert torch.equal(batch[keys.PIXELS][:, :, 0, 0, 0].long(), expected_pixels)
    assert torch.equal(batch[keys.PIXELS].amax(dim=(2, 3, 4)), batch[keys.PIXELS].amin(dim=(2, 3, 4)))
    assert torch.equal(batch[keys.REWARD], ((1000.0 * episode + real) * mask).float())
    assert torch.equal(batch[keys.STEP], real * mask) and torch.equal(batch[keys.EPISODE], episode * mask)
    assert torch.equal(batch[keys.ACTION], (real % 17) * mask)
    last = real == lengths[episode] - 1
    assert torch.equal(batch[keys.TERMINATED], last & mask) and not batch[keys.TRUNCATED].any()
    assert torch.equal(batch["index"] == 0, ~mask), "padding reads the store's zero row"


def test_beyond_end_windows_pad_on_both_sides(tmp_path):
    store = make_store(tmp_path, [3, 40, 7, 1])
    buffer = make_segment_buffer(store, make_sampler(store, length=10), batch_size=600)
    batch = buffer.sample()
    assert batch.shape == (600, 10) and batch[keys.MASK_PADDING].dtype == torch.bool
    check_windows(batch, store.lengths)
    mask = batch[keys.MASK_PADDING]
    left, right = ~mask[:, 0], ~mask[:, -1]
    assert (left & ~right).any() and (right & ~left).any() and (left & right).any() and (~left & ~right).any()


def test_actor_critic_windows_end_on_a_real_frame(tmp_path):
    store = make_store(tmp_path, [3, 40, 7, 1])
    sampler = make_sampler(store, component="actor_critic", length=6, beyond=False)
    batch = make_segment_buffer(store, sampler, batch_size=600).sample()
    check_windows(batch, store.lengths)
    mask = batch[keys.MASK_PADDING]
    assert mask[:, -1].all(), "the last frame is always real"
    assert (~mask[:, 0]).any(), "left padding happens"
    short = batch[keys.EPISODE].amax(1) == 3  # the 1-step episode: one real frame, at the end
    assert short.any() and (mask[short].sum(1) == 1).all()


@pytest.mark.parametrize("beyond", [True, False])
def test_window_starts_follow_the_reference_distribution(tmp_path, beyond):
    n, length, samples = 5, 4, 40_000
    store = make_store(tmp_path, [n])
    sampler = make_sampler(store, length=length, beyond=beyond)
    _, starts, _ = sampler.sample_windows(samples)
    expected = torch.zeros(n + length, dtype=torch.float64)  # P(start = s), s in [-(L-1), n-1]
    for t in range(n):
        for u in range(length):
            start = t - u if beyond else min(n, t + 1 + u) - length
            expected[start + length - 1] += 1 / (n * length)
    observed = torch.bincount(starts + length - 1, minlength=n + length).double() / samples
    assert torch.allclose(observed, expected, atol=0.015), (observed, expected)


def test_episode_frequencies_match_count_weights(tmp_path):
    store = make_store(tmp_path, [2, 9, 4, 30])
    counts = EpisodeCounts()
    counts.increment("world_model", torch.tensor([1, 2, 2, 2]))  # counts 0, 1, 3, 0
    sampler = make_sampler(store, component="world_model", alpha=1.0, counts=counts)
    expected = torch.tensor([1, 1 / 2, 1 / 4, 1], dtype=torch.float64)
    expected /= expected.sum()
    assert torch.allclose(counts.probabilities("world_model", 4, alpha=1.0), expected)
    samples = 40_000
    episodes, _, _ = sampler.sample_windows(samples)
    observed = torch.bincount(episodes, minlength=4).double() / samples
    sigma = (expected * (1 - expected) / samples).sqrt()
    assert ((observed - expected).abs() < 5 * sigma).all(), (observed, expected)  # per episode, not per step


def test_increments_change_the_probabilities(tmp_path):
    store = make_store(tmp_path, [5, 6, 7, 8])
    counts = EpisodeCounts()
    sampler = make_sampler(store, alpha=5.0, counts=counts)
    buffer = make_segment_buffer(store, sampler, batch_size=32)
    batch = buffer.sample()
    episodes = sampler.increment_counts(batch)
    assert torch.equal(episodes, batch[keys.EPISODE].amax(1))
    assert torch.equal(counts.counts("tokenizer", 4), torch.bincount(episodes, minlength=4))
    assert not counts.counts("world_model").any(), "components count separately"
    weights = (1.0 + torch.bincount(episodes, minlength=4).double()) ** -5.0
    assert torch.allclose(counts.probabilities("tokenizer", 4, alpha=5.0), weights / weights.sum())
    counts.increment("tokenizer", torch.tensor([0, 1, 3] * 40))  # now episode 2 is the least seen
    assert counts.probabilities("tokenizer", 4, alpha=5.0)[2] > 0.99
    assert (sampler.sample_windows(1000)[0] == 2).float().mean() > 0.97
    store.add_batch(episode_batch(4, 3))  # a new episode joins with count 0
    assert counts.probabilities("tokenizer", 5, alpha=5.0)[4] > 0.4
    check_windows(buffer.sample(), store.lengths)


def test_same_seed_same_batches(tmp_path):
    store = make_store(tmp_path, [5, 12, 3])

    def batches(seed):
        buffer = make_segment_buffer(store, make_sampler(store, seed=seed), batch_size=8)
        return [buffer.sample().exclude("index") for _ in range(3)]

    assert all((a == b).all() for a, b in zip(batches(0), batches(0)))
    assert not all((a == b).all() for a, b in zip(batches(0), batches(1)))
    sampler = make_sampler(store, seed=3)
    state = sampler.state_dict()
    first = sampler.sample_windows(16)
    sampler.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(first, sampler.sample_windows(16)))


def test_counts_state_and_errors(tmp_path):
    counts = EpisodeCounts()
    counts.increment("actor_critic", torch.tensor([0, 4, 4]))
    counts.save(tmp_path / "counts.pt")
    restored = EpisodeCounts()
    restored.load(tmp_path / "counts.pt")
    assert restored.counts("actor_critic").tolist() == [1, 0, 0, 0, 2]
    with pytest.raises(KeyError, match="unknown component 'critic'"):
        counts.probabilities("critic", 3, alpha=1.0)
    with pytest.raises(KeyError, match="expected"):
        EpisodeCounts(["tokenizer"]).load_state_dict(counts.state_dict())
    store = make_store(tmp_path, [2])
    with pytest.raises(KeyError, match="unknown component 'policy'"):
        make_sampler(store, component="policy")
    empty = EpisodeStore(tmp_path / "empty", capacity=10)
    with pytest.raises(RuntimeError, match="empty"):
        make_sampler(empty).sample_windows(2)
