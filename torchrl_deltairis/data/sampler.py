"""Δ-IRIS segment sampling as a TorchRL ``Sampler`` over the episode store.

The reference's ``BatchSampler`` (its ``src/data/sampler.py``), per segment of length ``L``:

    episode e ~ Categorical(p),  p_e ∝ (1 + count_e[component]) ** -alpha
    t ~ U{0 .. len_e - 1}
    can_sample_beyond_end (tokenizer, world model):  start = t - U{0 .. L-1};  stop = start + L
    otherwise (actor-critic):  stop = min(len_e, t + 1 + U{0 .. L-1});  start = stop - L

so windows may begin before the episode (left zero padding) and, in the first mode, run past its
end (right padding); in the second mode the last frame is always real. Positions outside the
episode point at the store's all-zero padding row, so the storage gather itself yields zeros there;
``mask_padding`` (False on padding) rides in the sampler's info, which ``TensorDictReplayBuffer``
writes into the sample. torchrl's prioritized / segment-tree samplers are not used (a different rule, and its compiled
extension does not load with some torch builds); the weights are recomputed from the counts at every
call (O(num_episodes)), so increments take effect on the next batch (the reference's lag behind its
loader's prefetching is not reproduced: docs/departures.md#storage-and-sampling).

Examples:
    >>> counts = EpisodeCounts()
    >>> sampler = SegmentSampler(store, counts, "tokenizer", 21, can_sample_beyond_end=True,
    ...                          alpha=5.0, seed=0)
    >>> buffer = make_segment_buffer(store, sampler, batch_size=32)
    >>> batch = buffer.sample()  # TensorDict [32, 21]: store keys, "mask_padding", "index"
    >>> sampler.increment_counts(batch)  # from epoch 2 on, after each batch
"""

from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.data import TensorDictReplayBuffer
from torchrl.data.replay_buffers.samplers import Sampler
from torchrl.data.replay_buffers.storages import Storage
from torchrl.data.replay_buffers.writers import ImmutableDatasetWriter

from torchrl_deltairis import keys
from torchrl_deltairis.compat import sampler_generator
from torchrl_deltairis.data.atomic_io import torch_save_atomic
from torchrl_deltairis.data.counts import EpisodeCounts
from torchrl_deltairis.data.store import PADDING_ROW, EpisodeStore


class SegmentSampler(Sampler):
    """Count-weighted episodes, uniform timestep, zero-padded windows of ``sequence_length`` steps.

    Args:
        store: the episode store to sample from (its index maps episodes to storage rows).
        counts: the shared per-component episode counts.
        component: which counts weight the episodes (one of ``counts.components``).
        sequence_length: L, the window length.

    Keyword Args:
        can_sample_beyond_end: True for the tokenizer and world model (padding on both sides), False
            for the actor-critic (left padding only; the last frame is always real).
        alpha: the priority exponent (Crafter 5, Atari 1).
        generator: the torch.Generator to draw from; else one seeded with ``seed``. A generator
            given to the replay buffer (``TensorDictReplayBuffer(generator=...)``) takes precedence.
        seed: the seed of the owned generator when ``generator`` is None.
    """

    def __init__(
        self,
        store: EpisodeStore,
        counts: EpisodeCounts,
        component: str,
        sequence_length: int,
        *,
        can_sample_beyond_end: bool,
        alpha: float,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        if component not in counts.components:
            raise KeyError(f"unknown component {component!r}; known: {sorted(counts.components)}")
        if sequence_length < 1:
            raise ValueError(f"sequence_length must be >= 1, got {sequence_length}")
        self.store = store
        self.counts = counts
        self.component = component
        self.sequence_length = sequence_length
        self.can_sample_beyond_end = can_sample_beyond_end
        self.alpha = float(alpha)
        if generator is None:
            generator = torch.Generator()
            if seed is None:
                generator.seed()  # non-deterministic, without touching the global RNG
            else:
                generator.manual_seed(seed)
        self.generator = generator

    @property
    def rng(self) -> torch.Generator:
        return sampler_generator(self, self.generator)

    def sample_windows(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Episode ids (B,), window starts (B,) (may be < 0) and episode lengths (B,)."""
        index = self.store.index
        if index.num_episodes == 0:
            raise RuntimeError("cannot sample segments: the episode store is empty")
        rng, length = self.rng, self.sequence_length
        p = self.counts.probabilities(self.component, index.num_episodes, self.alpha)
        episodes = torch.multinomial(p, batch_size, replacement=True, generator=rng)
        lengths = index.lengths[episodes]
        t = (torch.rand(batch_size, generator=rng, dtype=torch.float64) * lengths).long()  # U{0..len-1}
        shift = torch.randint(0, length, (batch_size,), generator=rng)
        if self.can_sample_beyond_end:
            starts = t - shift
        else:
            starts = torch.minimum(lengths, t + 1 + shift) - length
        return episodes, starts, lengths

    def sample(self, storage: Storage, batch_size: int) -> tuple[torch.Tensor, dict]:
        """Storage rows (B, L) (the padding row on padding) and ``{"mask_padding": (B, L) bool}``."""
        if storage is not self.store.storage:
            raise ValueError("SegmentSampler must sample the storage of the EpisodeStore it was given")
        episodes, starts, lengths = self.sample_windows(batch_size)
        position = starts[:, None] + torch.arange(self.sequence_length)  # (B, L) step in episode
        mask = (position >= 0) & (position < lengths[:, None])
        index = self.store.index
        flat = index.offsets()[episodes][:, None] + torch.minimum(position.clamp(min=0), lengths[:, None] - 1)
        rows = torch.where(mask, index.order()[flat].long(), PADDING_ROW)
        return rows, {keys.MASK_PADDING: mask}

    def increment_counts(self, batch: TensorDictBase) -> torch.Tensor:
        """Count one visit per segment of a sampled batch [B, L]; returns the episode ids (B,)."""
        if batch.ndim != 2 or keys.MASK_PADDING not in batch.keys():
            raise ValueError(
                f"expected a sampled segment batch [B, L] with 'mask_padding', got {tuple(batch.shape)}"
            )
        # Padding rows hold episode 0, ids are >= 0 and every window has a real step: the max is the id.
        episodes = torch.where(batch[keys.MASK_PADDING], batch[keys.EPISODE], -1).amax(dim=1)
        self.counts.increment(self.component, episodes)
        return episodes

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.generator.set_state(state_dict["generator"])

    def _empty(self) -> None:
        """Nothing to clear: windows are drawn from the store's index, the sampler keeps no rows."""

    def dumps(self, path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        torch_save_atomic(self.state_dict(), path / "segment_sampler.pt")

    def loads(self, path) -> None:
        self.load_state_dict(torch.load(Path(path) / "segment_sampler.pt", weights_only=True))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(component={self.component!r}, sequence_length={self.sequence_length}, "
            f"can_sample_beyond_end={self.can_sample_beyond_end}, alpha={self.alpha})"
        )


def make_segment_buffer(
    store: EpisodeStore, sampler: SegmentSampler, batch_size: int
) -> TensorDictReplayBuffer:
    """A read-only ``TensorDictReplayBuffer`` over the store's storage whose ``sample()`` is [B, L]."""
    if sampler.store is not store:
        raise ValueError("the sampler was built for another EpisodeStore")
    return TensorDictReplayBuffer(
        storage=store.storage,
        sampler=sampler,
        writer=ImmutableDatasetWriter(),
        batch_size=batch_size,
        generator=sampler.generator,
    )
