"""`python train.py params=smoke` (at tiny budgets: conftest's TINY): a whole run on CPU, its run folder,
and resuming after a SIGKILL (the epochs and steps of the unkilled run; offline, its very metrics).

The kills land on events, not after sleeps: a ``sitecustomize`` on the run's path (``_pause_env``)
stops the trainer (SIGSTOP) at a chosen point of its code, e.g. between writing a batch's rows and
committing them, and the test then SIGKILLs its whole process group (env workers too)."""

import csv
import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from conftest import (RUN_ENV, SHORT_EPISODES, TINY, TINY_STEPS, metrics_without_timings, start_train,
                      stderr_of)

pytestmark = pytest.mark.slow


def _epochs(run_dir: Path) -> list[int]:
    with open(run_dir / "metrics.csv", newline="") as file:
        return [int(row["epoch"]) for row in csv.DictReader(file)]


def _committed_steps(run_dir: Path) -> int:
    return json.loads((run_dir / "dataset" / "train" / "commit.json").read_text())["num_rows"] - 1


def _checkpoint_epoch(run_dir: Path) -> int:
    state = run_dir / "checkpoints" / "state.pt"
    return int(torch.load(state, weights_only=True)["epoch"]) if state.exists() else 0


def _steps_per_epoch(run_dir: Path) -> list[int]:
    with open(run_dir / "metrics.csv", newline="") as file:
        return [int(float(row["collection/train/steps"])) for row in csv.DictReader(file)]


# Loaded by the interpreter of every process started with _pause_env's PYTHONPATH; acts in train.py's only.
# DELTAIRIS_TEST_PAUSE names the point: "before_commit:<store>:<n>" / "after_commit:<store>:<n>" (the n-th
# commit this process makes to dataset/<store>: train or test), or "before_training:<epoch>" (the epoch's
# steps collected, none of its updates made). There the trainer writes DELTAIRIS_TEST_PAUSED and stops.
PAUSE_HOOK = '''
import os
import sys


def _install(spec, marker):
    import signal

    def pause():
        with open(marker, "w") as file:
            file.write(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGSTOP)  # the test SIGKILLs the process group from here

    when, *args = spec.split(":")
    if when in ("before_commit", "after_commit"):
        from torchrl_deltairis.data.store import EpisodeStore
        store, n = args[0], int(args[1])
        commit, seen = EpisodeStore._commit, []

        def _commit(self):
            ours = self.directory.name == store and self.directory.parent.name == "dataset"
            if ours:
                seen.append(1)
            if ours and len(seen) == n and when == "before_commit":
                pause()
            commit(self)
            if ours and len(seen) == n and when == "after_commit":
                pause()
        EpisodeStore._commit = _commit
    elif when == "before_training":
        from torchrl_deltairis import trainer
        epoch, train_components = int(args[0]), trainer.train_components

        def train_components_then_pause(components, at, *rest, **kwargs):
            if at == epoch:
                pause()
            return train_components(components, at, *rest, **kwargs)
        trainer.train_components = train_components_then_pause
    else:
        raise ValueError(spec)


if os.environ.get("DELTAIRIS_TEST_PAUSE") and sys.argv and sys.argv[0].endswith("train.py"):
    _install(os.environ["DELTAIRIS_TEST_PAUSE"], os.environ["DELTAIRIS_TEST_PAUSED"])
'''


def _pause_env(tmp_path: Path, point: str) -> dict[str, str]:
    """The environment of a run that stops at ``point`` (see PAUSE_HOOK), for ``_kill_when_paused``."""
    hook = tmp_path / "pause_hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(PAUSE_HOOK)
    marker = tmp_path / "paused"
    marker.unlink(missing_ok=True)
    path = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, "DELTAIRIS_TEST_PAUSE": point, "DELTAIRIS_TEST_PAUSED": str(marker)}


def _kill_when_paused(proc, env: dict[str, str], what: str) -> None:
    """SIGKILLs the run's whole process group (env workers too) once it has stopped at its pause point."""
    marker = Path(env["DELTAIRIS_TEST_PAUSED"])
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    paused = marker.exists()
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert paused, f"the run did not reach {what}: {stderr_of(proc)}"
    assert proc.returncode == -signal.SIGKILL, stderr_of(proc)


def _resume(run_dir: Path, *args: str, env: dict | None = None):
    """``scripts/resume.sh`` (it execs train.py), like ``start_train`` otherwise."""
    err = run_dir.parent / f"{run_dir.name}.stderr"
    with open(err, "a") as stderr:
        proc = subprocess.Popen(["bash", str(run_dir / "scripts" / "resume.sh"), *args],
                                env={**os.environ, **RUN_ENV, **(env or {})},
                                stdout=subprocess.DEVNULL, stderr=stderr, text=True, start_new_session=True)
    proc.stderr_path = err
    return proc


def _finish(proc) -> None:
    proc.wait(timeout=600)
    assert proc.returncode == 0, stderr_of(proc)


def test_sigkill_at_several_points_then_resume_keeps_every_step_and_finishes(tmp_path, request):
    """SIGKILLed during epoch 1's collection (a batch's rows written, not yet committed: before any
    epoch ends), during epoch 2's evaluation, and right after epoch 2's checkpoint (epoch 3's steps
    collected, its training begun), resumed each time with scripts/resume.sh: every committed step is
    kept, and the epochs and the steps stored per epoch are those of the run that was not killed
    (TINY_STEPS: test_smoke_run_writes_every_artifact). On the Reach env: its workers start in a
    fraction of Crafter's time, and its episodes (at most 8 steps) end in every batch."""
    if any(getattr(item, "originalname", None) == "test_smoke_run_writes_every_artifact"
           for item in request.session.items):
        request.getfixturevalue("offline_runs")  # its runs go on beside this test's
    run_dir = tmp_path / "run"
    first, later, _ = TINY_STEPS
    overrides = (*TINY, "env=gym", *SHORT_EPISODES["gym"])

    pause = _pause_env(tmp_path, "before_commit:train:2")  # the second batch of epoch 1
    _kill_when_paused(start_train(run_dir, *overrides, env=pause), pause, "its first collection")
    kept = _committed_steps(run_dir)
    assert _checkpoint_epoch(run_dir) == 0 and 0 < kept < first  # the epoch-0 checkpoint, one batch

    pause = _pause_env(tmp_path, "after_commit:test:1")  # the first batch of epoch 2's test episodes
    _kill_when_paused(_resume(run_dir, env=pause), pause, "its evaluation of epoch 2")
    assert (run_dir / "dataset" / "test" / "commit.json").exists()
    assert _committed_steps(run_dir) == first + later  # epoch 1 went on from the kept steps; epoch 2's
    assert _checkpoint_epoch(run_dir) == 1

    pause = _pause_env(tmp_path, "before_training:3")
    _kill_when_paused(_resume(run_dir, env=pause), pause, "its training of epoch 3")
    assert _checkpoint_epoch(run_dir) == 2
    steps_third_kill = _committed_steps(run_dir)

    _finish(_resume(run_dir))
    assert _epochs(run_dir) == [1, 2, 3] and _checkpoint_epoch(run_dir) == 3
    assert _committed_steps(run_dir) == sum(TINY_STEPS) == steps_third_kill  # nothing re-collected
    assert _steps_per_epoch(run_dir) == list(TINY_STEPS)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["epoch"] == 3 and len(results["returns"]) == 2
    with open(run_dir / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    for key in ("tokenizer/loss_reconstruction_l2", "world_model/loss_latents", "actor_critic/loss_values",
                "collection/test/return_mean"):
        assert rows[-1][key] not in ("", "nan"), key

    # `params.common.resume=auto` on a finished run does no work and leaves its results alone: it does
    # not even reopen the stores (which rewrites their TorchRL records) or start env processes
    untouched = [run_dir / "results.json", *(run_dir / "dataset").glob("*/storage/storage_metadata.json")]
    before = [path.stat().st_mtime_ns for path in untouched]
    again = _resume(run_dir, "params.common.resume=auto")
    _finish(again)
    assert _epochs(run_dir) == [1, 2, 3] and len(untouched) == 3
    assert [path.stat().st_mtime_ns for path in untouched] == before


def _offline_sequence(run_dir: Path, base: Path) -> dict:
    """A new run trains on ``run_dir``'s dataset, starting from its models, collecting nothing; beside it
    the same run, SIGKILLed when its first epoch is checkpointed, then resumed."""
    offline, killed = base / "offline", base / "killed"
    offline_args = (*TINY, *SHORT_EPISODES["crafter"],
                    f"params.collection.path_to_static_dataset={run_dir / 'dataset'}",
                    f"params.initialization.path_to_checkpoint={run_dir / 'checkpoints' / 'last.pt'}",
                    "params.common.epochs=2")
    pause = _pause_env(base, "before_training:2")
    killed_proc = start_train(killed, *offline_args, env=pause)
    proc = start_train(offline, *offline_args)
    _kill_when_paused(killed_proc, pause, "its training of epoch 2")
    _finish(proc)
    at_kill = {"epochs": _epochs(killed), "checkpoint": _checkpoint_epoch(killed)}
    _finish(_resume(killed))
    return {"offline": offline, "killed": killed, "killed_at_kill": at_kill}


@pytest.fixture(scope="module")
def offline_runs(smoke_runs, tmp_path_factory):
    """``_offline_sequence`` on the shared smoke run, in a thread: a future of its result. Started by
    the SIGKILL test when test_smoke_run_writes_every_artifact is also selected, so that these runs
    share the 2 cores with that test's runs (one process at a time)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool.submit(_offline_sequence, smoke_runs[0], tmp_path_factory.mktemp("offline"))


def test_smoke_run_writes_every_artifact(smoke_runs, offline_runs):
    run_dir = smoke_runs[0]
    for path in ("config/trainer.yaml", "checkpoints/state.pt", "checkpoints/last.pt", "metrics.csv",
                 "media/reconstructions/epoch_0002.png", "media/reconstructions/epoch_0003.png",
                 "media/videos/epoch_0002_test.gif", "media/videos/epoch_0003_imagination.gif",
                 "scripts/resume.sh", "scripts/play.sh", "results.json",
                 "dataset/train/commit.json", "dataset/test/commit.json"):
        assert (run_dir / path).exists(), path
    for split in ("train", "test"):
        for kind in ("recent", "best"):
            saved = list((run_dir / "media" / "episodes" / split / kind).glob("epoch_*.pt"))
            assert 1 <= len(saved) <= 10, (split, kind)
    results = json.loads((run_dir / "results.json").read_text())
    assert (results["game"], results["family"], results["epoch"], results["seed"]) == \
        ("crafter", "crafter", 3, 0)
    assert len(results["returns"]) == 2 and results["score"] == pytest.approx(sum(results["returns"]) / 2)
    assert set(results["crafter"]["train"]["success_rates"]) == \
        set(results["crafter"]["test"]["success_rates"])
    assert _epochs(run_dir) == [1, 2, 3]
    with open(run_dir / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    for key in ("tokenizer/loss_reconstruction_l2", "world_model/loss_latents", "actor_critic/loss_values"):
        assert float(rows[-1][key]) == float(rows[-1][key]), key  # present and not NaN
    assert rows[1]["collection/test/return_mean"] != ""  # the evaluation of epoch 2 ran test episodes
    assert any(row["collection/train/return_mean"] != "" for row in rows)
    assert _steps_per_epoch(run_dir) == list(TINY_STEPS) and _committed_steps(run_dir) == sum(TINY_STEPS)
    models = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert {k.split(".")[0] for k in models} == {"tokenizer", "world_model", "actor_critic"}
    log = (run_dir / "train.log").read_text()  # what the console said, as Hydra logs it
    for said in (f"run folder: {run_dir}", "starting 2 env worker processes (crafter)", "2 env workers ready in ",
                 "models on cpu: tokenizer ", "projected on this machine: the whole run ~"):
        assert said in log, (said, log)

    # offline: a new run trains on this run's dataset, starting from its models, collecting nothing
    done = offline_runs.result(timeout=1800)
    offline, killed = done["offline"], done["killed"]
    assert _epochs(offline) == [1, 2] and not (offline / "dataset").exists()
    assert not (offline / "results.json").exists()  # no test episodes, no score
    assert _committed_steps(run_dir) == sum(TINY_STEPS)  # the static dataset is read, not written
    with open(offline / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert rows[-1]["eval/world_model/loss_latents"] != "" and rows[-1]["actor_critic/loss_values"] != ""
    assert "collection/train/steps" not in rows[0]
    assert (offline / "media" / "videos" / "epoch_0002_imagination.gif").exists()

    # resumed after the kill, it trains epoch 2 as the unkilled run did: the same non-timing metrics
    # (a run on a static dataset: with envs, a resumed run's episodes start afresh)
    assert done["killed_at_kill"] == {"epochs": [1], "checkpoint": 1}
    assert metrics_without_timings(killed) == metrics_without_timings(offline)
