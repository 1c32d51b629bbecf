"""The disk a run's episode stores need: the estimate (``build.data.disk_need``) against what a store
really writes, the check at the start of a run (refuse / warn, on a faked ``shutil.disk_usage``), and
a real full disk (a small tmpfs in a private mount namespace) under a store write."""

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
import types
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import SHORT_EPISODES, TINY, TINY_STEPS
from test_store import make_batch
from torchrl_deltairis import keys
from torchrl_deltairis.data import EpisodeStore
from torchrl_deltairis.data.disk import allocated_bytes, bytes_per_step, store_bytes
from torchrl_deltairis.build.data import GB, check_disk_space, disk_need
from torchrl_deltairis.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
Usage = namedtuple("Usage", "total used free")  # shutil.disk_usage's answer


def config(*overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def fake_free(monkeypatch, free: float) -> None:
    free = math.ceil(free)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(4 * free + 1, 0, free))


def slack(directory: Path) -> int:
    """The documented tolerance of ``store_bytes``: each file of the store rounded up to whole blocks."""
    files = sum(len(names) for _, _, names in os.walk(directory))
    return files * os.statvfs(directory).f_bsize


# ------------------------------------------------------------------------------------------ estimate

@pytest.mark.parametrize("frame_shape", [(3, 64, 64), (3, 32, 32)])
def test_the_estimate_is_what_a_store_writes(tmp_path, frame_shape):
    """A step's bytes are those of a row of the store's columns, exactly; a store of N steps takes
    ``store_bytes(N)`` of disk, up to one block per file (the rounding of each file to blocks)."""
    store = EpisodeStore(tmp_path / "store", capacity=10_000)
    assert allocated_bytes(tmp_path / "store") == store_bytes(0, frame_shape) == 0  # nothing before a step
    sizes = []
    for seed, (envs, steps) in enumerate([(2, 7), (3, 20), (1, 5)]):
        batch = make_batch(torch.rand(envs, steps, generator=torch.Generator().manual_seed(seed)) < 0.2, seed=seed)
        batch[keys.PIXELS] = batch[keys.PIXELS][..., : frame_shape[1], : frame_shape[2]].contiguous()
        store.end_open_episodes()  # another number of env rows
        store.add_batch(batch)
        estimate, written = store_bytes(store.num_steps, frame_shape), allocated_bytes(tmp_path / "store")
        assert 0 <= written - estimate <= slack(tmp_path / "store"), (store.num_steps, written, estimate)
        sizes.append((store.num_steps, written))
    row = store.storage.get(0)  # the padding row: every column the store keeps
    assert bytes_per_step(frame_shape) == sum(v.numel() * v.element_size() for v in row.values(True, True))
    assert set(row.keys()) == set(keys.STORE_KEYS)
    (n1, w1), (n2, w2) = sizes[0], sizes[1]  # what more steps add: their bytes, to a block per file
    assert abs((w2 - w1) - (n2 - n1) * bytes_per_step(frame_shape)) <= slack(tmp_path / "store")


def test_the_schedule_gives_the_steps_a_real_collection_stores(tmp_path):
    """The train store's steps from the schedule (whole batches, the overshoot carried to the next
    epoch) are those the collector really stores, with batches that do not divide the epochs' steps;
    its bytes are what that store takes on disk."""
    from torchrl_deltairis.collectors import EpisodeCollector, ExplorationPolicy
    from torchrl_deltairis.envs import make_batched_env

    cfg = config("env=reach", "params=reach", "params.collection.train.num_envs=3",
                 "params.collection.train.steps_per_batch=7", "params.collection.train.config.num_steps_first_epoch=40",
                 "params.collection.train.config.num_steps=20", "params.collection.train.stop_after_epochs=3",
                 "params.common.epochs=4", "params.evaluation.should=false")
    need = disk_need(RunConfig.from_hydra(cfg), tmp_path)
    env = make_batched_env(OmegaConf.to_container(cfg.env.train, resolve=True), 3, seed=0, parallel=False)
    store = EpisodeStore(tmp_path / "store", capacity=1000)
    collector = EpisodeCollector(env, ExplorationPolicy(int(env.action_spec.space.n), epsilon=1.0), store,
                                 steps_per_batch=7, progress=False)
    try:
        for steps in (40, 20, 20):  # epochs 1-3; epoch 4 is past stop_after_epochs
            collector.collect(steps)
    finally:
        collector.shutdown()
    assert need.train_steps == store.num_steps == 84  # 42 (2 batches of 21), 21, 21
    assert need.test_steps == need.test_bytes == 0  # no evaluation
    assert 0 <= allocated_bytes(tmp_path / "store") - need.train_bytes <= slack(tmp_path / "store")


def test_the_figures_of_the_shipped_schedules():
    """Crafter's: the ~123 GB of 10M stored steps; its test store at most 64 episodes of 10,000 steps.
    TINY (the runs of the tests): the steps conftest says each epoch stores. A static dataset: none."""
    crafter = disk_need(RunConfig.from_hydra(config()), Path("/nonexistent"))
    assert crafter.train_steps == 100_000 + 990 * 10_000 and crafter.test_steps == 64 * 10_000
    assert crafter.train_bytes == (10_000_000 + 1) * 12_318 and round(crafter.train_bytes / GB) == 123
    assert crafter.needed_bytes == crafter.train_bytes + crafter.test_bytes and crafter.held_bytes == 0
    atari = disk_need(RunConfig.from_hydra(config("env=atari", "params=atari")), Path("/nonexistent"))
    assert atari.train_steps == 2000 + 490 * 200 and atari.test_steps == 32 * 108_000 // 4  # raw frames / skip
    assert disk_need(RunConfig.from_hydra(config(*TINY)), Path("/nonexistent")).train_steps == sum(TINY_STEPS)


def test_a_resumed_run_needs_only_what_its_stores_do_not_hold_yet(tmp_path, monkeypatch):
    """A run folder whose train store holds 100 of its 240 steps (a resume): its need is the fresh
    run's less the bytes its stores take, so a disk too small for a new run may still take it."""
    cfg = config(*TINY, *SHORT_EPISODES["crafter"], "params.collection.train.config.num_steps=100")
    fresh = disk_need(RunConfig.from_hydra(cfg), tmp_path / "run")
    assert (fresh.train_steps, fresh.test_steps) == (240, 2 * 15)
    store = EpisodeStore(tmp_path / "run" / "dataset" / "train", capacity=10_000)
    store.add_batch(make_batch(torch.zeros(2, 50, dtype=torch.bool), seed=0))
    held = allocated_bytes(tmp_path / "run" / "dataset")
    resumed = disk_need(RunConfig.from_hydra(cfg), tmp_path / "run")
    assert resumed.held_bytes == held > 0 and resumed.needed_bytes == fresh.needed_bytes - held
    fake_free(monkeypatch, resumed.needed_bytes * 1.2)
    assert check_disk_space(RunConfig.from_hydra(cfg), tmp_path / "run") is None
    with pytest.raises(ValueError, match="the episode stores need 0.0 GB more"):
        check_disk_space(RunConfig.from_hydra(cfg), tmp_path / "new")  # the same disk refuses a new run
    fake_free(monkeypatch, resumed.needed_bytes - 1)
    with pytest.raises(ValueError, match=f"{held / GB:.1f} GB of it already on disk"):
        check_disk_space(RunConfig.from_hydra(cfg), tmp_path / "run")


# ------------------------------------------------------------------------------------------ the check

def test_a_run_whose_stores_do_not_fit_is_refused_in_one_line_naming_both_figures_and_the_keys(tmp_path,
                                                                                                monkeypatch):
    """The default Crafter run on a 64 GB disk (a GPU node, a laptop): 131.1 GB needed."""
    fake_free(monkeypatch, 64e9)
    with pytest.raises(ValueError) as err:
        check_disk_space(RunConfig.from_hydra(config()), tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("the episode stores need 131.1 GB more by the end of the schedule (train 10000000 "
                              "steps, 123.2 GB; test up to 640000 steps, 7.9 GB)")
    assert f"but {tmp_path} has 64.0 GB free" in message
    for key in ("params.collection.train.config.num_steps_first_epoch=100000",
                "params.collection.train.config.num_steps=10000", "params.collection.train.stop_after_epochs=991",
                "params.collection.test.config.num_episodes=64"):
        assert key in message, key


def test_a_run_that_fits_with_less_than_10_percent_to_spare_is_warned_about(tmp_path, monkeypatch):
    cfg = config(*TINY)
    needed = disk_need(RunConfig.from_hydra(cfg), tmp_path).needed_bytes
    for free, expected in ((needed - 1, "refused"), (needed, "warned"), (1.09 * needed, "warned"),
                           (1.1 * needed, "silent"), (1000 * needed, "silent")):
        fake_free(monkeypatch, free)
        try:
            warning = check_disk_space(RunConfig.from_hydra(cfg), tmp_path)
        except ValueError:
            outcome = "refused"
        else:
            outcome = "silent" if warning is None else "warned"
            if warning is not None:
                assert "\n" not in warning and "less than 10 % to spare" in warning, warning
                assert "params.collection.train.config.num_steps=20" in warning
        assert outcome == expected, (free / needed, outcome)
    fake_free(monkeypatch, 0)  # a static dataset writes no store: nothing to check
    static = config(*TINY, f"params.collection.path_to_static_dataset={tmp_path / 'dataset'}")
    for split in ("train", "test"):
        store = EpisodeStore(tmp_path / "dataset" / split, capacity=10)
        store.add_batch(make_batch(torch.zeros(1, 2, dtype=torch.bool), seed=0))
    assert disk_need(RunConfig.from_hydra(static), tmp_path / "run").needed_bytes == 0
    assert check_disk_space(RunConfig.from_hydra(static), tmp_path / "run") is None


def test_build_trainer_refuses_before_anything_is_written_and_prints_the_warning(tmp_path, monkeypatch, capsys):
    import torchrl_deltairis.build.lifecycle as run
    from torchrl_deltairis.runlock import RunLock

    cfg = config(*TINY)
    run_dir = tmp_path / "run"
    fake_free(monkeypatch, 1000)
    with pytest.raises(ValueError, match="the episode stores need .* but .* has 0.0 GB free"):
        run.build_trainer(cfg, run_dir, ROOT / "train.py", progress=False)
    assert not (run_dir / "dataset").exists() and not (run_dir / "config").exists()  # no run file written
    RunLock(run_dir).release()  # the refusal released the folder
    built = types.SimpleNamespace()
    monkeypatch.setattr(run, "_open_run", lambda *args: built)  # the rest of the build (env workers, models)
    fake_free(monkeypatch, 1.05 * disk_need(RunConfig.from_hydra(cfg), run_dir).needed_bytes)
    assert run.build_trainer(cfg, run_dir, ROOT / "train.py", progress=False) is built
    built.on_close[0]()  # the folder's lock, released by the trainer's close
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: the episode stores need "), lines


# ------------------------------------------------------------------------------------------ a full disk

FULL_DISK = textwrap.dedent(
    """
    # In a private mount namespace: a tmpfs of 3 MiB, 1 MiB of it taken by a filler file, under a store.
    import json, os, subprocess, sys
    import torch
    sys.path.insert(0, {tests!r})
    from test_store import make_batch
    from torchrl_deltairis import keys
    from torchrl_deltairis.data import EpisodeStore

    WRITER = '''
    import sys, torch
    sys.path.insert(0, {tests!r})
    from test_store import make_batch
    from torchrl_deltairis.data import EpisodeStore
    if sys.argv[2] == "unreserved":  # the rows written through the memory maps without their blocks
        EpisodeStore._reserve = lambda self, start, count: None
    store = EpisodeStore(sys.argv[1], capacity=10_000)
    for i in range(1000):
        store.add_batch(make_batch(torch.zeros(2, 5, dtype=torch.bool), seed=i))
        print(store.num_steps, flush=True)  # committed
    '''

    def pixels(seeds):
        return torch.cat([make_batch(torch.zeros(2, 5, dtype=torch.bool), seed=i)[keys.PIXELS].reshape(-1, 3, 64, 64)
                          for i in seeds])

    report = {{}}
    for mode in ("reserved", "unreserved"):
        disk = os.path.join({base!r}, mode)
        os.makedirs(disk)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", disk],
                                 capture_output=True, text=True)
        if mounted.returncode:
            print(json.dumps({{"skip": "mount -t tmpfs failed: " + mounted.stderr.strip()}}))
            sys.exit(0)
        with open(os.path.join(disk, "filler"), "wb") as f:
            f.write(b"x" * 2**20)
        writer = subprocess.run([sys.executable, "-c", WRITER, os.path.join(disk, "store"), mode],
                                capture_output=True, text=True)
        committed = [int(line) for line in writer.stdout.split() if line.isdigit()]
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        store = EpisodeStore(os.path.join(disk, "store"))  # the disk still full
        n = store.num_steps
        readable = bool((store.storage.get(slice(1, n + 1))[keys.PIXELS] == pixels(range(n // 10))).all())
        del store
        os.remove(os.path.join(disk, "filler"))  # space is freed: the store goes on
        store = EpisodeStore(os.path.join(disk, "store"))
        for i in range(100, 103):
            store.add_batch(make_batch(torch.zeros(2, 5, dtype=torch.bool), seed=i))
        store = EpisodeStore(os.path.join(disk, "store"))
        resumed = bool((store.storage.get(slice(1, store.num_steps + 1))[keys.PIXELS]
                        == pixels([*range(n // 10), 100, 101, 102])).all())
        report[mode] = {{"returncode": writer.returncode, "last_error": (writer.stderr.strip().splitlines() or [""])[-1],
                         "last_committed": committed[-1] if committed else 0, "free_after": free,
                         "reopened_steps": n, "readable_while_full": readable,
                         "steps_after_resume": store.num_steps, "resumed_rows_match": resumed}}
    print(json.dumps(report))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux" or shutil.which("unshare") is None or shutil.which("mount") is None,
                    reason="needs Linux's unshare and mount (a tmpfs in a private mount namespace)")
def test_a_really_full_disk_keeps_every_committed_step_readable_and_the_store_goes_on_once_space_is_freed(tmp_path):
    """A store filling a real disk: a 3 MiB tmpfs, mounted in a private mount namespace (``unshare``;
    nothing outside the test sees it, and it goes with the namespace). With the blocks of each write
    reserved first (the store's ``_reserve``) the write fails with ``OSError(ENOSPC)``, which the CLI
    reports in one line; without it, the memory-mapped write kills the writer with SIGBUS. Either
    way every committed step reads back, on the still full disk too, and after freeing space the
    store takes new steps after them."""
    script = FULL_DISK.format(tests=str(Path(__file__).parent), base=str(tmp_path))
    proc = subprocess.run(["unshare", "--mount", "--map-root-user", sys.executable, "-c", script],
                          capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode and "unshare failed" in proc.stderr:
        pytest.skip(f"no private mount namespace here: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    if "skip" in report:
        pytest.skip(report["skip"])
    reserved, unreserved = report["reserved"], report["unreserved"]
    assert reserved["returncode"] == 1 and reserved["last_error"].startswith(
        "OSError: [Errno 28] No space left on device: "), reserved
    assert reserved["last_error"].endswith("/storage/pixels.memmap'"), reserved
    assert unreserved["returncode"] == -7, unreserved  # SIGBUS
    for mode, r in report.items():
        assert r["free_after"] < 12_288 * 10, (mode, r)  # the disk was full: not even one more batch fits
        assert r["last_committed"] >= 100 and r["reopened_steps"] == r["last_committed"], (mode, r)
        assert r["readable_while_full"] and r["resumed_rows_match"], (mode, r)
        assert r["steps_after_resume"] == r["last_committed"] + 30, (mode, r)
