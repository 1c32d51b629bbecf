"""On-disk episode store: a TorchRL ``TensorDictReplayBuffer`` on ``LazyMemmapStorage``, one row per step.

Layout of ``directory`` (the run folder's store dir)::

    commit.json                  the commit record (the only source of truth, replaced atomically):
                                 {"format", "capacity", "num_rows", "num_episodes", "frame_shape"}
    storage/                     LazyMemmapStorage(capacity + 1, scratch_dir=storage/), i.e. a
                                 tensordict memmap directory: meta.json (keys, dtypes, shapes)
                                 and one sparse file per key (pixels.memmap, action.memmap, ...)
    storage/storage_metadata.json  TorchRL's checkpointer record ({"len": num_rows, ...}), so that
                                 ``LazyMemmapStorage(...).loads(storage/)`` also reopens the data

Row 0 of the storage is an all-zero *padding row*: the segment sampler points padded positions at it,
so padded steps come out as zeros without any copy. Real steps live in rows ``1 .. num_rows - 1``, in
the order they were added; the in-RAM :class:`EpisodeIndex` maps episodes to their rows. Sample
training segments through ``sampler.make_segment_buffer``; ``store.buffer`` (default random sampler)
is the buffer the store writes through and is not meant for sampling.

Crash safety: ``add_batch`` writes the rows through the buffer (the memmap files are ``MAP_SHARED``,
so written pages belong to the kernel's page cache and survive a SIGKILL of the writer), then commits:
``storage_metadata.json`` and ``commit.json`` are written to temporary files and ``os.replace``'d.
Rows past the committed ``num_rows`` are ignored on reopen and overwritten by the next write. The
memmap files are created once, by the first ``add_batch`` of a store without ``commit.json`` (any
leftover from a crash before that first commit is wiped). ``durable=True`` also fsyncs the data files
and the commit record (power-loss safety); it is not needed against a killed process.

Reopening: ``EpisodeStore(directory)`` finds ``commit.json``, writes TorchRL's
``storage_metadata.json`` with the committed length and calls ``LazyMemmapStorage.loads`` on the same
directory: since that is the storage's ``scratch_dir``, TorchRL memory-maps the files in place
(``TensorDict.load_memmap``, zero copy) and sets the length. The writer's cursor is set to ``num_rows``
and the index is rebuilt from the ``episode``/``step``/``terminated``/``truncated`` columns (~1 s at
10M steps; the alternatives rejected: docs/torchrl.md "Episode store, sampling and collection").
Episodes that were still running are never continued after a reopen (the environments are new): the
next batch of every env row starts a new episode; the unfinished ones stay sampleable. One writer
process per store; reading the store while another process writes it is not supported.
"""

import shutil
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.data import LazyMemmapStorage, TensorDictReplayBuffer
from torchrl.data.replay_buffers.writers import RoundRobinWriter

from torchrl_deltairis import keys
from torchrl_deltairis.compat import storage_set_length
from torchrl_deltairis.data.atomic_io import fsync_path, read_json, write_json_atomic
from torchrl_deltairis.data.batch_input import steps_from_batch
from torchrl_deltairis.data.disk import PADDING_ROW, reserve_rows
from torchrl_deltairis.data.episode_index import EpisodeIndex, assign_episodes, with_episodes

FORMAT = 1


class EpisodeStore:
    """Persistent per-step store of real episodes (Δ-IRIS's ``EpisodeDataset``, on TorchRL memmaps).

    Args:
        directory: where the store lives (created if needed); an existing store is reopened.
        capacity: the most steps it may hold (Crafter: 10M, ~123 GB of sparse files). Required for
            a new store; for an existing one it must be ``None`` or equal to the stored capacity.
        durable: fsync the data and the commit record at every commit.

    Examples:
        >>> store = EpisodeStore(tmp_path / "store", capacity=1000)
        >>> store.add_batch(collector_batch)  # [num_envs, T] TensorDict from a TorchRL Collector
        >>> store.num_steps, store.num_episodes, store.lengths
        >>> store.episode(0)  # TensorDict [len] with keys.STORE_KEYS
    """

    def __init__(self, directory: str | Path, capacity: int | None = None, *, durable: bool = False) -> None:
        self.directory = Path(directory)
        self.durable = durable
        self._storage_dir = self.directory / "storage"
        commit_path = self.directory / "commit.json"
        for leftover in [*self.directory.glob(".*.tmp-*"), *self._storage_dir.glob(".*.tmp-*")]:
            leftover.unlink()  # temporary files of a writer killed mid-commit
        commit = read_json(commit_path) if commit_path.exists() else None
        if commit is None:
            if capacity is None or capacity < 1:
                raise ValueError(f"a new store at {self.directory} needs a capacity >= 1, got {capacity}")
            shutil.rmtree(self._storage_dir, ignore_errors=True)  # leftovers of a crash before 1st commit
            self._storage_dir.mkdir(parents=True)
        else:
            if commit.get("format") != FORMAT:
                raise ValueError(f"{commit_path}: unknown format {commit.get('format')}, expected {FORMAT}")
            if capacity is not None and capacity != commit["capacity"]:
                raise ValueError(
                    f"{self.directory} holds a store of capacity {commit['capacity']}, not {capacity}"
                )
            capacity = commit["capacity"]
        self.capacity = capacity
        self.storage = LazyMemmapStorage(capacity + 1, scratch_dir=self._storage_dir, auto_cleanup=False)
        self._writer = RoundRobinWriter()
        self.buffer = TensorDictReplayBuffer(storage=self.storage, writer=self._writer)
        self._index = EpisodeIndex(capacity, row_offset=PADDING_ROW + 1)
        self._num_rows = 0  # committed rows, padding row included
        self._end_open_episodes(num_envs=0)
        if commit is not None:
            self._rollback(commit["num_rows"])

    # ---------------------------------------------------------------- accessors
    @property
    def num_steps(self) -> int:
        return self._index.num_rows

    @property
    def num_episodes(self) -> int:
        return self._index.num_episodes

    @property
    def index(self) -> EpisodeIndex:
        return self._index

    @property
    def lengths(self) -> torch.Tensor:
        """(num_episodes,) int64 episode lengths (running episodes: steps stored so far)."""
        return self._index.lengths.clone()

    @property
    def finished(self) -> torch.Tensor:
        """(num_episodes,) bool: the episode's last stored step was terminated or truncated."""
        return self._index.finished.clone()

    @property
    def open_episodes(self) -> torch.Tensor:
        """(num_env_rows,) int64: the episode each env row is still writing, -1 where none."""
        return self._open_episode.clone()

    def is_finished(self, episode: int) -> bool:
        self._index.rows(episode)  # range check
        return bool(self._index.finished[episode])

    def returns(self) -> torch.Tensor:
        """(num_finished,) float64: the sum of rewards of every finished episode, in episode order
        (e.g. the test episodes of the latest evaluation, read back from the test store)."""
        if self._num_rows <= PADDING_ROW + 1:
            return torch.zeros(0, dtype=torch.float64)
        columns = self.storage.get(slice(PADDING_ROW + 1, self._num_rows))
        totals = torch.zeros(self.num_episodes, dtype=torch.float64)
        totals.index_add_(0, columns.get(keys.EPISODE).long().reshape(-1),
                          columns.get(keys.REWARD).double().reshape(-1))
        return totals[self._index.finished]

    def episode(self, episode: int) -> TensorDictBase:
        """One whole episode as a TensorDict [length] with ``keys.STORE_KEYS`` (for replay / video)."""
        return self.storage.get(self._index.rows(episode))

    def __len__(self) -> int:
        return self.num_steps

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.directory)!r}, steps={self.num_steps}, "
            f"episodes={self.num_episodes}, capacity={self.capacity})"
        )

    # ---------------------------------------------------------------- writing
    def add_batch(self, batch: TensorDictBase, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Append a collector batch ``[num_envs, T]`` (or one env's ``[T]``) and commit it.

        ``keep`` (bool, shaped like the batch) stores only the steps it marks: a prefix of each env
        row, whose dropped rest follows a finished episode (an env past its test quota). Returns the
        episode id of every step, shaped like the batch (-1 for dropped steps).
        """
        steps, done = steps_from_batch(batch, self._frame_shape())
        if keep is not None:
            keep = keep.reshape(steps.shape).to(device="cpu", dtype=torch.bool)
        new_steps = steps.numel() if keep is None else int(keep.sum())
        if self.num_steps + new_steps > self.capacity:
            raise RuntimeError(
                f"store full: {self.num_steps} + {new_steps} steps > capacity {self.capacity}"
            )
        num_envs = steps.shape[0]
        if self._open_episode.numel() != num_envs:
            if bool((self._open_episode >= 0).any()):
                raise ValueError(
                    f"batch has {num_envs} env rows but the store tracks {self._open_episode.numel()} "
                    "running episodes; call end_open_episodes() first if the environments changed"
                )
            self._end_open_episodes(num_envs)
        assigned = assign_episodes(done, self._open_episode, self._open_length, self.num_episodes, keep)
        steps = with_episodes(steps, assigned)
        flat = steps.reshape(-1)  # env-major: each env row's steps stay contiguous on disk
        if keep is not None:
            flat = flat[keep.reshape(-1)]
        if flat.numel() == 0:
            self._open_episode, self._open_length = assigned.open_episode, assigned.open_length
            return torch.full(batch.shape, -1, dtype=torch.int64)
        if self._num_rows == 0:  # first write ever: lay out the files, then the padding row
            self.buffer.extend(torch.zeros_like(flat[:1]))
            self._num_rows = 1
        self._reserve(self._num_rows, flat.numel())
        rows = self.buffer.extend(flat)
        assert int(rows[0]) == self._num_rows and rows.numel() == flat.numel(), (rows, self._num_rows)
        self._index.append(flat[keys.EPISODE], flat[keys.STEP], flat[keys.TERMINATED] | flat[keys.TRUNCATED])
        self._num_rows += flat.numel()
        self._open_episode, self._open_length = assigned.open_episode, assigned.open_length
        self._commit()
        episode = assigned.episode if keep is None else torch.where(keep, assigned.episode, -1)
        return episode if batch.ndim == 2 else episode[0]

    def end_open_episodes(self) -> None:
        """Forget the running episodes: every env row's next step starts a new episode."""
        self._end_open_episodes(num_envs=0)

    def _end_open_episodes(self, num_envs: int) -> None:
        self._open_episode = torch.full((num_envs,), -1, dtype=torch.int64)
        self._open_length = torch.zeros(num_envs, dtype=torch.int64)

    def _frame_shape(self) -> tuple[int, ...] | None:
        if not self.storage.initialized:
            return None
        return tuple(self.storage.get(PADDING_ROW).get(keys.PIXELS).shape)

    def _reserve(self, start: int, count: int) -> None:
        """Disk blocks for rows ``start .. start + count - 1`` before they are written (``reserve_rows``)."""
        reserve_rows(self._storage_dir, self.storage.get(PADDING_ROW), start, count)

    def _commit(self) -> None:
        if self.durable:
            for path in self._storage_dir.glob("*.memmap"):
                fsync_path(path)
        # TorchRL's record first (a crash between the two leaves commit.json, the truth, behind).
        torchrl_record = {"metadata": {}, "is_pytree": False, "len": self._num_rows}
        write_json_atomic(self._storage_dir / "storage_metadata.json", torchrl_record, fsync=self.durable)
        record = {
            "format": FORMAT,
            "capacity": self.capacity,
            "num_rows": self._num_rows,
            "num_episodes": self.num_episodes,
            "frame_shape": list(self._frame_shape()),
        }
        write_json_atomic(self.directory / "commit.json", record, fsync=self.durable)

    # ---------------------------------------------------------------- reopening
    def _rollback(self, num_rows: int) -> None:
        """The storage's length set to ``num_rows``, the writer's cursor through its ``load_state_dict``,
        then the index from the columns (memmap views, no frame read).

        An unmapped storage (a reopen) maps the files through TorchRL's checkpointer: its record, then
        ``loads`` (zero copy: ``scratch_dir`` is that same directory). A mapped one already views these
        files, created in ``scratch_dir`` or reopened from it, so only its length changes: ``loads``
        would copy every row of the capacity onto itself there (TorchRL skips the copy only for a
        storage it created itself), writing a reopened store's whole capacity to disk."""
        if self.storage.initialized:
            storage_set_length(self.storage, num_rows)  # what TorchRL's loads would do, without its copy
        else:  # TorchRL's record is rewritten only when it differs (a kill between the two records of
            # a commit): reopening a store on a full disk, to read its committed steps, writes nothing
            torchrl_record = {"metadata": {}, "is_pytree": False, "len": num_rows}
            record_path = self._storage_dir / "storage_metadata.json"
            try:
                current = read_json(record_path)
            except (OSError, ValueError):
                current = None
            if current != torchrl_record:
                write_json_atomic(record_path, torchrl_record)
            self.storage.loads(self._storage_dir)
        self._writer.load_state_dict({"_cursor": num_rows, "_write_count": num_rows})
        columns = self.storage.get(slice(PADDING_ROW + 1, num_rows))
        self._index = EpisodeIndex.from_columns(
            columns[keys.EPISODE].clone(),
            columns[keys.STEP].clone(),
            columns[keys.TERMINATED] | columns[keys.TRUNCATED],
            self.capacity,
            row_offset=PADDING_ROW + 1,
        )
        self._num_rows = num_rows
        self.end_open_episodes()

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to find this store again as it was (the data itself is on disk)."""
        return {"num_steps": self.num_steps, "num_episodes": self.num_episodes}

    def clear(self) -> None:
        """Drop every step (e.g. the test store before a new evaluation); the files are kept."""
        self.load_state_dict({"num_steps": 0, "num_episodes": 0})

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Roll the store back to a checkpoint: steps added after it are dropped (and committed so).

        Running episodes are ended (they cannot be continued by new environments).
        """
        num_steps, num_episodes = state_dict["num_steps"], state_dict["num_episodes"]
        if num_steps > self.num_steps:
            raise ValueError(
                f"checkpoint expects {num_steps} steps but the store holds only {self.num_steps}"
            )
        if num_steps < self.num_steps:
            self._rollback(PADDING_ROW + 1 + num_steps)
            self._commit()
        self.end_open_episodes()
        if self.num_episodes != num_episodes:
            raise ValueError(f"checkpoint expects {num_episodes} episodes, the store has {self.num_episodes}")
