"""The on-disk episode store and Δ-IRIS segment sampling (see ``store.py`` for the disk layout)."""

from torchrl_deltairis.data.atomic_io import torch_save_atomic, write_json_atomic
from torchrl_deltairis.data.counts import COMPONENTS, EpisodeCounts
from torchrl_deltairis.data.episode_index import EpisodeIndex, assign_episodes
from torchrl_deltairis.data.sampler import SegmentSampler, make_segment_buffer
from torchrl_deltairis.data.store import PADDING_ROW, EpisodeStore

__all__ = [
    "COMPONENTS",
    "EpisodeCounts",
    "EpisodeIndex",
    "EpisodeStore",
    "PADDING_ROW",
    "SegmentSampler",
    "assign_episodes",
    "make_segment_buffer",
    "torch_save_atomic",
    "write_json_atomic",
]
