"""The episode store's in-RAM index: which storage rows hold which episode, in step order.

Frames stay on disk; this index keeps two int32 per stored step (episode id, step in episode),
the per-episode lengths and "finished" flags, and, built lazily, the rows of every episode laid out
episode after episode (``order``) so that step ``s`` of episode ``e`` is storage row
``order[offsets[e] + s]``. At Crafter's 10M steps that is ~120 MB of RAM.

:func:`assign_episodes` turns a collector batch's ``done`` flags into episode ids and steps.
"""

from typing import NamedTuple

import torch
from tensordict import TensorDictBase

from torchrl_deltairis import keys

_INT32_MAX = torch.iinfo(torch.int32).max


class EpisodeAssignment(NamedTuple):
    episode: torch.Tensor  # (E, T) int64, episode id of every step
    step: torch.Tensor  # (E, T) int64, index of the step inside its episode
    open_episode: torch.Tensor  # (E,) int64, episode still running after the batch, -1 if none
    open_length: torch.Tensor  # (E,) int64, its length so far (0 if none)
    num_episodes: int  # episode ids allocated so far


def assign_episodes(
    done: torch.Tensor, open_episode: torch.Tensor, open_length: torch.Tensor, num_episodes: int,
    keep: torch.Tensor | None = None,
) -> EpisodeAssignment:
    """Episode ids and steps for a batch of ``E`` env rows × ``T`` consecutive steps.

    A row continues its open episode (``open_episode[e] >= 0``) unless the step before was done.
    New ids are allocated in order of creation: by time step first, then by env row. ``keep``
    (bool ``(E, T)``, optional) marks the steps that will be stored: in each row a prefix, and a
    dropped suffix must follow a done step (or a row with no open episode); dropped steps get no id.

    Why not the collector's ``("collector", "traj_ids")``: the store's ids index its episodes on disk,
    so they must be dense (0, 1, 2, ... in storage order, the sampler's counts and priorities are
    arrays over them) and persist across processes. ``traj_ids`` restart at 0 in every new collector
    (a resumed run, the test collector) and count the steps an env takes past its test quota, which
    the store drops.
    """
    assert done.ndim == 2 and done.dtype == torch.bool, (done.shape, done.dtype)
    num_envs, horizon = done.shape
    assert open_episode.shape == open_length.shape == (num_envs,), (open_episode.shape, num_envs)
    starts = torch.zeros_like(done)  # (E, T): a new episode begins at this step
    starts[:, 0] = open_episode < 0
    starts[:, 1:] = done[:, :-1]
    if keep is not None:
        assert keep.shape == done.shape and keep.dtype == torch.bool, (keep.shape, keep.dtype)
        if bool((keep[:, 1:] & ~keep[:, :-1]).any()):
            raise ValueError("keep must be a prefix of each env row")
        cut = keep.sum(1)  # first dropped step of each row (horizon: none)
        cut_after_done = torch.where(cut > 0, done.gather(1, (cut - 1).clamp(min=0)[:, None])[:, 0],
                                     open_episode < 0)
        if bool(((cut < horizon) & ~cut_after_done).any()):
            raise ValueError("keep may only drop the steps that follow a finished episode")
        starts &= keep
        done = done | ~keep  # a row whose kept steps ended has no open episode after the batch
    time_idx, env_idx = starts.T.nonzero(as_tuple=True)  # time-major: creation order
    new_id = torch.full((num_envs, horizon), -1, dtype=torch.int64)
    new_id[env_idx, time_idx] = num_episodes + torch.arange(time_idx.numel())
    time = torch.arange(horizon).expand(num_envs, horizon)
    last_start = torch.where(starts, time, -1).cummax(dim=1).values  # (E, T)
    started = last_start >= 0
    episode = torch.where(started, new_id.gather(1, last_start.clamp(min=0)), open_episode[:, None])
    step = torch.where(started, time - last_start, open_length[:, None] + time)
    ended = done[:, -1]
    return EpisodeAssignment(
        episode=episode,
        step=step,
        open_episode=torch.where(ended, -1, episode[:, -1]),
        open_length=torch.where(ended, 0, step[:, -1] + 1),
        num_episodes=num_episodes + time_idx.numel(),
    )


class EpisodeIndex:
    """Episode → storage rows, for rows ``row_offset, row_offset + 1, ...`` appended in order.

    Args:
        capacity: the most steps it will hold (< 2**31).
        row_offset: the storage row of the first indexed step.
    """

    def __init__(self, capacity: int, row_offset: int = 0) -> None:
        if not 0 < capacity + row_offset <= _INT32_MAX:
            raise ValueError(f"capacity must be in [1, {_INT32_MAX - row_offset}], got {capacity}")
        self.capacity = capacity
        self.row_offset = row_offset
        self.num_rows = 0
        self.num_episodes = 0
        # torch.empty does not touch the pages: RAM grows with the rows actually written.
        self._row_episode = torch.empty(capacity, dtype=torch.int32)
        self._row_step = torch.empty(capacity, dtype=torch.int32)
        self._lengths = torch.zeros(16, dtype=torch.int64)
        self._finished = torch.zeros(16, dtype=torch.bool)
        self._order = None  # built lazily, reset by append

    @classmethod
    def from_columns(
        cls, episode: torch.Tensor, step: torch.Tensor, ended: torch.Tensor, capacity: int, row_offset: int
    ) -> "EpisodeIndex":
        """Rebuild the index from the stored columns (reopening a store); checks their consistency."""
        index = cls(capacity, row_offset)
        index.append(episode, step, ended)
        step = step.long()
        steps_ok = bool(((step >= 0) & (step < index.lengths[episode.long()])).all())
        if not steps_ok or bool((index.order() < 0).any()):
            raise RuntimeError("the stored episode/step columns are inconsistent (corrupted store?)")
        return index

    def append(self, episode: torch.Tensor, step: torch.Tensor, ended: torch.Tensor) -> None:
        """Index the next ``k`` rows: 1-D ``episode``, ``step`` (ints) and ``ended`` (bool)."""
        k = episode.numel()
        assert episode.shape == step.shape == ended.shape == (k,), (episode.shape, step.shape, ended.shape)
        if self.num_rows + k > self.capacity:
            raise RuntimeError(f"the episode index is full: {self.num_rows} + {k} > capacity {self.capacity}")
        if k == 0:
            return
        episode = episode.long()
        if int(episode.min()) < 0:
            raise ValueError(f"episode ids must be >= 0, got {int(episode.min())}")
        self._row_episode[self.num_rows : self.num_rows + k] = episode.int()
        self._row_step[self.num_rows : self.num_rows + k] = step.int()
        num_episodes = max(self.num_episodes, int(episode.max()) + 1)
        self._grow(num_episodes)
        self._lengths.index_add_(0, episode, torch.ones_like(episode))
        self._finished[episode[ended]] = True
        self.num_rows += k
        self.num_episodes = num_episodes
        self._order = None

    def _grow(self, num_episodes: int) -> None:
        size = self._lengths.numel()
        if num_episodes > size:
            size = max(num_episodes, 2 * size)
            extra = size - self._lengths.numel()
            self._lengths = torch.cat([self._lengths, self._lengths.new_zeros(extra)])
            self._finished = torch.cat([self._finished, self._finished.new_zeros(extra)])

    @property
    def lengths(self) -> torch.Tensor:
        """(num_episodes,) int64, a view: do not modify."""
        return self._lengths[: self.num_episodes]

    @property
    def finished(self) -> torch.Tensor:
        """(num_episodes,) bool, a view: True once the episode's last stored step was done."""
        return self._finished[: self.num_episodes]

    def offsets(self) -> torch.Tensor:
        """(num_episodes,) int64: position of each episode's first step in :meth:`order`."""
        return torch.cumsum(self.lengths, 0) - self.lengths

    def order(self) -> torch.Tensor:
        """(num_rows,) int32 storage rows, episode after episode, each in step order."""
        if self._order is None:
            n = self.num_rows
            position = self.offsets()[self._row_episode[:n].long()] + self._row_step[:n].long()
            order = torch.full((n,), -1, dtype=torch.int32)
            order[position] = torch.arange(self.row_offset, self.row_offset + n, dtype=torch.int32)
            self._order = order
        return self._order

    def rows(self, episode: int) -> torch.Tensor:
        """(length,) int64 storage rows of one episode, in step order."""
        if not 0 <= episode < self.num_episodes:
            raise IndexError(f"episode {episode} out of range [0, {self.num_episodes})")
        start = int(self.offsets()[episode])
        return self.order()[start : start + int(self._lengths[episode])].long()


def with_episodes(steps: TensorDictBase, assigned) -> TensorDictBase:
    """The ``episode`` and ``step`` columns of an ``assign_episodes`` result, added to ``steps``."""
    steps[keys.EPISODE] = assigned.episode
    steps[keys.STEP] = assigned.step
    return steps
