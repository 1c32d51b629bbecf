"""Per-component episode visit counts and the sampling weights derived from them (Δ-IRIS).

Each trained component ("tokenizer", "world_model", "actor_critic") keeps its own count of how many
sampled segments came from each episode. Episode ``e`` is drawn with probability
``p_e ∝ (1 + count_e) ** -alpha``: with alpha = 5 (Crafter) a never-sampled episode weighs 1 against
1/32 after a single use; alpha = 1 on Atari. Episodes the counts have not seen yet count 0.
"""

from pathlib import Path
from typing import Any, Sequence

import torch

from torchrl_deltairis.data.atomic_io import torch_save_atomic

COMPONENTS = ("tokenizer", "world_model", "actor_critic")  # the trained networks, in training order


class EpisodeCounts:
    """Per-component int64 counts, one per episode, growing with the store.

    Args:
        components: the names of the components that sample segments.
    """

    def __init__(self, components: Sequence[str] = COMPONENTS) -> None:
        if isinstance(components, str) or len(set(components)) != len(components) or not components:
            raise ValueError(f"components must be distinct names, got {components!r}")
        self._counts = {name: torch.zeros(0, dtype=torch.int64) for name in components}

    @property
    def components(self) -> tuple[str, ...]:
        return tuple(self._counts)

    def _get(self, component: str, num_episodes: int = 0) -> torch.Tensor:
        if component not in self._counts:
            raise KeyError(f"unknown component {component!r}; known: {sorted(self._counts)}")
        counts = self._counts[component]
        if counts.numel() < num_episodes:
            counts = torch.cat([counts, counts.new_zeros(num_episodes - counts.numel())])
            self._counts[component] = counts
        return counts

    def counts(self, component: str, num_episodes: int = 0) -> torch.Tensor:
        """A copy of the counts, padded with zeros to at least ``num_episodes``."""
        return self._get(component, num_episodes).clone()

    def probabilities(self, component: str, num_episodes: int, alpha: float) -> torch.Tensor:
        """(num_episodes,) float64 sampling probabilities ∝ (1 + count) ** -alpha."""
        if num_episodes < 1:
            raise ValueError(f"cannot sample from {num_episodes} episodes")
        counts = self._get(component, num_episodes)[:num_episodes]
        weights = (1.0 + counts.double()).pow(-alpha)
        return weights / weights.sum()

    def increment(self, component: str, episodes: torch.Tensor) -> None:
        """Add 1 per occurrence of each id in ``episodes`` (a segment per entry, repeats count twice)."""
        episodes = torch.as_tensor(episodes, dtype=torch.int64).reshape(-1)
        if episodes.numel() == 0:
            return
        if int(episodes.min()) < 0:
            raise ValueError(f"episode ids must be >= 0, got {episodes.tolist()}")
        counts = self._get(component, int(episodes.max()) + 1)
        counts.index_add_(0, episodes, torch.ones_like(episodes))

    def state_dict(self) -> dict[str, Any]:
        return {"counts": {name: counts.clone() for name, counts in self._counts.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        counts = state_dict["counts"]
        if set(counts) != set(self._counts):
            raise KeyError(f"state_dict has components {sorted(counts)}, expected {sorted(self._counts)}")
        self._counts = {name: torch.as_tensor(counts[name], dtype=torch.int64).clone() for name in counts}

    def save(self, path: str | Path) -> None:
        """Write the counts atomically (temporary file + ``os.replace``)."""
        torch_save_atomic(self.state_dict(), Path(path))

    def load(self, path: str | Path) -> None:
        self.load_state_dict(torch.load(Path(path), weights_only=True))
