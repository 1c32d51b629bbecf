"""The on-disk episode store: episode ids across batches and env rows, reopening, crash safety."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from tensordict import TensorDict

from torchrl_deltairis import keys
from torchrl_deltairis.data import EpisodeStore


def make_batch(
    done: torch.Tensor, seed: int, action_shape_1: bool = True, truncate_last: bool = False
) -> TensorDict:
    """A collector-like batch [E, T] (or [T]) with random frames, ending episodes where ``done``."""
    g = torch.Generator().manual_seed(seed)
    shape = tuple(done.shape)
    terminated = done.clone()
    truncated = torch.zeros_like(done)
    if truncate_last:  # turn the last done of each row into a time-limit truncation
        terminated, truncated = torch.zeros_like(done), done.clone()
    action = torch.randint(0, 17, shape + ((1,) if action_shape_1 else ()), generator=g)
    return TensorDict(
        {
            keys.PIXELS: torch.randint(0, 256, shape + (3, 64, 64), dtype=torch.uint8, generator=g),
            keys.ACTION: action,
            keys.NEXT_REWARD: torch.randn(shape + (1,), generator=g),
            keys.NEXT_TERMINATED: terminated.unsqueeze(-1),
            keys.NEXT_TRUNCATED: truncated.unsqueeze(-1),
            keys.NEXT_DONE: done.unsqueeze(-1),
            keys.NEXT_PIXELS: torch.zeros(shape + (3, 64, 64), dtype=torch.uint8),  # not stored
        },
        batch_size=shape,
    )


def expected_episodes(batches: list[TensorDict]) -> list[TensorDict]:
    """Naive reference: walk time step by time step, env row by env row, collecting steps."""
    columns = (
        keys.PIXELS, keys.ACTION, keys.NEXT_REWARD, keys.NEXT_TERMINATED, keys.NEXT_TRUNCATED, keys.NEXT_DONE
    )
    open_ep: dict[int, list] = {}
    episodes: list[list] = []
    for batch in batches:
        batch = batch if batch.ndim == 2 else batch.unsqueeze(0)
        data = {key: batch[key].reshape(*batch.shape, *batch[key].shape[2:]) for key in columns}
        data[keys.ACTION] = data[keys.ACTION].reshape(batch.shape)
        for t in range(batch.shape[1]):
            for e in range(batch.shape[0]):
                if e not in open_ep:
                    open_ep[e] = []
                    episodes.append(open_ep[e])
                open_ep[e].append({key: value[e, t] for key, value in data.items()})
                if data[keys.NEXT_DONE][e, t].item():
                    del open_ep[e]
    return [
        TensorDict({key: torch.stack([step[key] for step in steps]) for key in columns}, [len(steps)])
        for steps in episodes
    ]


def assert_episode_equal(stored: TensorDict, steps: TensorDict, episode_id: int) -> None:
    n = steps.shape[0]
    assert stored.shape == (n,)
    assert torch.equal(stored[keys.PIXELS], steps[keys.PIXELS])
    assert torch.equal(stored[keys.ACTION], steps[keys.ACTION].reshape(n))
    assert torch.equal(stored[keys.REWARD], steps[keys.NEXT_REWARD].reshape(n))
    assert torch.equal(stored[keys.TERMINATED], steps[keys.NEXT_TERMINATED].reshape(n))
    assert torch.equal(stored[keys.TRUNCATED], steps[keys.NEXT_TRUNCATED].reshape(n))
    assert (stored[keys.EPISODE] == episode_id).all()
    assert torch.equal(stored[keys.STEP], torch.arange(n))


def test_episodes_continue_across_batches_and_env_rows(tmp_path):
    g = torch.Generator().manual_seed(0)
    batches = [
        make_batch(torch.rand(3, 9, generator=g) < 0.15, seed=i, action_shape_1=i % 2 == 0) for i in range(4)
    ]
    batches[0][keys.NEXT_DONE][1, 8] = batches[0][keys.NEXT_TERMINATED][1, 8] = True  # ends on a batch edge
    store = EpisodeStore(tmp_path / "store", capacity=500)
    ids = [store.add_batch(b) for b in batches]
    assert ids[0].shape == (3, 9) and ids[1][1, 0] != ids[0][1, 8]  # row 1 starts a new episode
    assert ids[1][0, 0] == ids[0][0, -1] or batches[0][keys.NEXT_DONE][0, -1]
    expected = expected_episodes(batches)
    assert store.num_steps == 4 * 27 and store.num_episodes == len(expected)
    assert store.lengths.tolist() == [len(steps) for steps in expected]
    for episode_id, steps in enumerate(expected):
        assert_episode_equal(store.episode(episode_id), steps, episode_id)
        assert store.is_finished(episode_id) == bool(steps[keys.NEXT_DONE][-1])
    assert not store.finished.all()  # the last episode of every row is still running
    finished = [steps for steps in expected if bool(steps[keys.NEXT_DONE][-1])]
    expected_returns = torch.tensor([float(steps[keys.NEXT_REWARD].double().sum()) for steps in finished])
    torch.testing.assert_close(store.returns(), expected_returns.double())  # finished episodes only, in order


def test_single_env_batches_and_truncation(tmp_path):
    store = EpisodeStore(tmp_path / "store", capacity=100, durable=True)  # also fsyncs
    first = make_batch(torch.tensor([0, 0, 0, 1, 0, 0], dtype=torch.bool), seed=0, action_shape_1=False)
    second = make_batch(torch.tensor([0, 1, 0], dtype=torch.bool), seed=1, truncate_last=True)
    assert store.add_batch(first).tolist() == [0, 0, 0, 0, 1, 1]
    assert store.add_batch(second).tolist() == [1, 1, 2]
    assert store.lengths.tolist() == [4, 4, 1] and store.finished.tolist() == [True, True, False]
    assert store.episode(1)[keys.TRUNCATED].tolist() == [False, False, False, True]
    assert not store.episode(1)[keys.TERMINATED].any()
    with pytest.raises(IndexError, match="episode 3 out of range"):
        store.episode(3)


def test_bad_batches_fail_with_clear_errors(tmp_path):
    store = EpisodeStore(tmp_path / "store", capacity=20)
    good = make_batch(torch.zeros(2, 4, dtype=torch.bool), seed=0)
    with pytest.raises(KeyError, match="reward"):
        store.add_batch(good.exclude(keys.NEXT_REWARD))
    bad_action = good.clone()
    bad_action[keys.ACTION] = torch.zeros(2, 4, 17, dtype=torch.int64)
    expected = r"'action': expected shape \(2, 4\) or \(2, 4, 1\), got \(2, 4, 17\)"
    with pytest.raises(ValueError, match=expected):
        store.add_batch(bad_action)
    with pytest.raises(ValueError, match="uint8"):
        store.add_batch(good.clone().apply(lambda x: x.float() if x.dtype == torch.uint8 else x))
    store.add_batch(good)
    small = good.clone()
    small = small.exclude(keys.PIXELS).set(keys.PIXELS, torch.zeros(2, 4, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"frames of shape \(3, 64, 64\), got \(3, 32, 32\)"):
        store.add_batch(small)
    with pytest.raises(ValueError, match="3 env rows but the store tracks 2"):
        store.add_batch(make_batch(torch.zeros(3, 1, dtype=torch.bool), seed=1))
    store.end_open_episodes()
    store.add_batch(make_batch(torch.zeros(3, 1, dtype=torch.bool), seed=1))
    with pytest.raises(RuntimeError, match="store full: 11 \\+ 10 steps > capacity 20"):
        store.add_batch(make_batch(torch.zeros(10, dtype=torch.bool), seed=2))
    with pytest.raises(ValueError, match="capacity 20, not 30"):
        EpisodeStore(tmp_path / "store", capacity=30)
    with pytest.raises(ValueError, match="needs a capacity"):
        EpisodeStore(tmp_path / "other")


def test_reopen_sees_committed_steps_only(tmp_path):
    g = torch.Generator().manual_seed(1)
    batches = [make_batch(torch.rand(2, 7, generator=g) < 0.2, seed=i) for i in range(3)]
    store = EpisodeStore(tmp_path / "store", capacity=100)
    for batch in batches:
        store.add_batch(batch)
    # Rows written without a commit (as if the process died before committing) must be ignored.
    store.buffer.extend(store.episode(0)[:2].clone())
    reopened = EpisodeStore(tmp_path / "store")
    assert (reopened.num_steps, reopened.num_episodes) == (store.num_steps, store.num_episodes)
    assert torch.equal(reopened.lengths, store.lengths) and torch.equal(reopened.finished, store.finished)
    assert torch.equal(reopened.index.order(), store.index.order())
    # Running episodes are not continued by a new process: new ids, old ones stay unfinished.
    new_ids = reopened.add_batch(make_batch(torch.zeros(2, 3, dtype=torch.bool), seed=9))
    assert new_ids[:, 0].tolist() == [store.num_episodes, store.num_episodes + 1]
    again = EpisodeStore(tmp_path / "store")
    expected = expected_episodes(batches)
    for episode_id, steps in enumerate(expected):
        assert_episode_equal(again.episode(episode_id), steps, episode_id)
    assert again.num_steps == store.num_steps + 6


def test_crash_before_the_first_commit_leaves_a_new_store(tmp_path):
    store = EpisodeStore(tmp_path / "store", capacity=50)
    store.add_batch(make_batch(torch.zeros(2, 3, dtype=torch.bool), seed=0))
    (tmp_path / "store" / "commit.json").unlink()  # as if killed between the memmap writes and the commit
    with pytest.raises(ValueError, match="needs a capacity"):
        EpisodeStore(tmp_path / "store")
    fresh = EpisodeStore(tmp_path / "store", capacity=50)
    assert fresh.num_steps == 0 and fresh.num_episodes == 0
    fresh.add_batch(make_batch(torch.zeros(1, 4, dtype=torch.bool), seed=1))
    assert EpisodeStore(tmp_path / "store").lengths.tolist() == [4]


def test_state_dict_rolls_back_to_a_checkpoint(tmp_path):
    store = EpisodeStore(tmp_path / "store", capacity=100)
    store.add_batch(make_batch(torch.tensor([[0, 1, 0], [0, 0, 0]], dtype=torch.bool), seed=0))
    checkpoint = store.state_dict()
    lengths = store.lengths
    store.add_batch(make_batch(torch.tensor([[1, 0, 0], [0, 0, 1]], dtype=torch.bool), seed=1))
    store.load_state_dict(checkpoint)
    assert store.state_dict() == checkpoint and torch.equal(store.lengths, lengths)
    assert EpisodeStore(tmp_path / "store").state_dict() == checkpoint  # the rollback is committed
    with pytest.raises(ValueError, match="expects 99 steps"):
        store.load_state_dict({"num_steps": 99, "num_episodes": 3})
    store.clear()
    assert (store.num_steps, store.num_episodes) == (0, 0)
    assert store.add_batch(make_batch(torch.zeros(1, 2, dtype=torch.bool), seed=3)).tolist() == [[0, 0]]
    assert EpisodeStore(tmp_path / "store").lengths.tolist() == [2]


def test_capacity_is_sparse_on_disk(tmp_path):
    store = EpisodeStore(tmp_path / "store", capacity=10_000_000)  # Crafter's 10M frames
    store.add_batch(make_batch(torch.zeros(4, 8, dtype=torch.bool), seed=0))
    stat = os.stat(tmp_path / "store" / "storage" / "pixels.memmap")
    assert stat.st_size == (10_000_000 + 1) * 3 * 64 * 64  # ~123 GB apparent size
    assert stat.st_blocks * 512 < 10 * 2**20  # a few pages actually used


def test_rolling_back_a_reopened_store_writes_no_row(tmp_path):
    """A resumed run reopens its stores, rolls the training store back to the checkpoint and clears
    the test store before each evaluation: none of it may touch the rows beyond the data. (TorchRL's
    ``loads`` copies the whole capacity onto itself for a reopened storage: a resumed smoke run wrote
    its test store's 24 GB of zeros to disk, a resumed Crafter run would write 123 GB.) A small
    capacity, so that a failure costs 250 MB of disk, not the capacity of a real run."""
    store = EpisodeStore(tmp_path / "store", capacity=20_000)
    store.add_batch(make_batch(torch.zeros(4, 8, dtype=torch.bool), seed=0))
    kept = store.state_dict()
    first = store.storage[1:33].clone()
    store.add_batch(make_batch(torch.zeros(4, 8, dtype=torch.bool), seed=1))
    pixels = tmp_path / "store" / "storage" / "pixels.memmap"
    for step in ("reopen", "roll back", "write", "clear", "reopen", "clear"):
        if step == "reopen":
            store = EpisodeStore(tmp_path / "store")
        elif step == "roll back":
            store.load_state_dict(kept)
            assert store.num_steps == 32 and (store.storage[1:33] == first).all()
        elif step == "write":
            store.add_batch(make_batch(torch.zeros(4, 8, dtype=torch.bool), seed=2))
            assert store.num_steps == 64 and len(store.storage) == 65
        else:
            store.clear()
            assert store.num_steps == 0 and len(store.storage) == 1
        assert os.stat(pixels).st_blocks * 512 < 10 * 2**20, step  # the whole capacity: 246 MB
    assert EpisodeStore(tmp_path / "store").num_steps == 0


KILL_WRITER = textwrap.dedent(
    """
    import sys, torch
    sys.path.insert(0, {tests_dir!r})
    from test_store import make_batch
    from torchrl_deltairis.data import EpisodeStore
    store = EpisodeStore({path!r}, capacity=100_000)
    for i in range(1000):
        g = torch.Generator().manual_seed(1000 + i)
        store.add_batch(make_batch(torch.rand(8, 16, generator=g) < 0.1, seed=i))
        print(i, flush=True)  # after the commit
    """
)


def test_sigkill_never_corrupts_committed_data(tmp_path):
    path = str(tmp_path / "store")
    code = KILL_WRITER.format(tests_dir=os.path.dirname(__file__), path=path)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        commits = 0
        while commits < 12:  # wait for 12 commits, then kill it while it is writing more
            line = proc.stdout.readline()
            assert line, "the writer died early"
            commits += line.strip().isdigit()  # torchrl logs to stdout too
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    store = EpisodeStore(path)
    committed = store.num_steps // (8 * 16)
    assert store.num_steps == committed * 8 * 16 and committed >= 12
    batches = [
        make_batch(torch.rand(8, 16, generator=torch.Generator().manual_seed(1000 + i)) < 0.1, seed=i)
        for i in range(committed)
    ]
    expected = expected_episodes(batches)
    assert store.num_episodes == len(expected)
    for episode_id, steps in enumerate(expected):
        assert_episode_equal(store.episode(episode_id), steps, episode_id)
    store.add_batch(make_batch(torch.zeros(8, 2, dtype=torch.bool), seed=0))  # and it goes on
    assert EpisodeStore(path).num_steps == store.num_steps


def test_keep_drops_the_steps_after_a_finished_episode(tmp_path):
    """An env past its test quota: its later steps are neither stored nor given episode ids."""
    store = EpisodeStore(tmp_path / "store", capacity=100)
    done = torch.tensor([[False, True, False, False], [False, False, False, True]])
    keep = torch.tensor([[True, True, False, False], [True, True, True, True]])
    batch = make_batch(done, seed=0)
    episodes = store.add_batch(batch, keep=keep)
    assert episodes.tolist() == [[0, 0, -1, -1], [1, 1, 1, 1]]
    assert store.num_steps == 6 and store.lengths.tolist() == [2, 4] and bool(store.finished.all())
    assert torch.equal(store.episode(0)[keys.PIXELS], batch[keys.PIXELS][0, :2])
    assert store.open_episodes.tolist() == [-1, -1]
    # a row dropped whole, the other starting its next episode: ids stay consecutive
    again = store.add_batch(make_batch(torch.zeros(2, 3, dtype=torch.bool), seed=1),
                            keep=torch.tensor([[False] * 3, [True] * 3]))
    assert again.tolist() == [[-1, -1, -1], [2, 2, 2]] and store.num_episodes == 3
    assert store.open_episodes.tolist() == [-1, 2]
    for bad, match in ((torch.tensor([[True, False, True], [True] * 3]), "prefix"),
                       (torch.tensor([[True] * 3, [True, False, False]]), "finished episode")):
        with pytest.raises(ValueError, match=match):
            store.add_batch(make_batch(torch.zeros(2, 3, dtype=torch.bool), seed=2), keep=bad)
    assert store.num_steps == 9


def test_a_full_disk_keeps_every_committed_step_and_the_store_goes_on_after_a_reopen(tmp_path, monkeypatch):
    import errno

    import torchrl_deltairis.data.store as store_module

    store = EpisodeStore(tmp_path / "store", capacity=500)
    store.add_batch(make_batch(torch.zeros(2, 5, dtype=torch.bool), seed=0))
    committed = store.num_steps

    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(store_module, "write_json_atomic", full)
    with pytest.raises(OSError) as err:
        store.add_batch(make_batch(torch.zeros(2, 5, dtype=torch.bool), seed=1))
    assert err.value.errno == errno.ENOSPC
    monkeypatch.undo()  # space is freed; the process that hit the error is gone
    reopened = EpisodeStore(tmp_path / "store")
    assert reopened.num_steps == committed
    torch.testing.assert_close(reopened.episode(0)[keys.PIXELS], store.episode(0)[keys.PIXELS][:5])
    reopened.add_batch(make_batch(torch.zeros(2, 5, dtype=torch.bool), seed=2))
    assert EpisodeStore(tmp_path / "store").num_steps == committed + 10
