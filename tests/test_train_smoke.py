"""`python train.py params=smoke`: a whole run on CPU, its run folder, and resuming after a SIGKILL (the
epochs and steps of the unkilled run; offline, its very metrics)."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import metrics_without_timings

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _train(run_dir: Path, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), "params=smoke", f"hydra.run.dir={run_dir}",
                             "wandb.mode=disabled", *overrides], cwd=run_dir.parent, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _epochs(run_dir: Path) -> list[int]:
    with open(run_dir / "metrics.csv", newline="") as file:
        return [int(row["epoch"]) for row in csv.DictReader(file)]


def _committed_steps(run_dir: Path) -> int:
    return json.loads((run_dir / "dataset" / "train" / "commit.json").read_text())["num_rows"] - 1


def test_smoke_run_writes_every_artifact(tmp_path):
    run_dir = tmp_path / "run"
    proc = _train(run_dir)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
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
    assert (results["game"], results["family"], results["epoch"], results["seed"]) == ("crafter", "crafter", 3, 0)
    assert len(results["returns"]) == 2 and results["score"] == pytest.approx(sum(results["returns"]) / 2)
    assert set(results["crafter"]["train"]["success_rates"]) == set(results["crafter"]["test"]["success_rates"])
    assert _epochs(run_dir) == [1, 2, 3]
    with open(run_dir / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    for key in ("tokenizer/loss_reconstruction_l2", "world_model/loss_latents", "actor_critic/loss_values"):
        assert float(rows[-1][key]) == float(rows[-1][key]), key  # present and not NaN
    assert rows[1]["collection/test/return_mean"] != ""  # the evaluation of epoch 2 ran test episodes
    assert any(row["collection/train/return_mean"] != "" for row in rows)
    assert _committed_steps(run_dir) == 300 + 100 + 100
    models = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert {k.split(".")[0] for k in models} == {"tokenizer", "world_model", "actor_critic"}

    # offline: a new run trains on this run's dataset, starting from its models, collecting nothing
    offline = tmp_path / "offline"
    offline_args = (f"params.collection.path_to_static_dataset={run_dir / 'dataset'}",
                    f"params.initialization.path_to_checkpoint={run_dir / 'checkpoints' / 'last.pt'}",
                    "params.common.epochs=2")
    killed = tmp_path / "killed"  # the same run, SIGKILLed after its first epoch, side by side
    killed_proc = _train(killed, *offline_args)
    proc = _train(offline, *offline_args)
    _kill_after_checkpoint(killed_proc, killed, epoch=1, delay=0)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert _epochs(offline) == [1, 2] and not (offline / "dataset").exists()
    assert not (offline / "results.json").exists()  # no test episodes, no score
    assert _committed_steps(run_dir) == 500  # the static dataset is read, not written
    with open(offline / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert rows[-1]["eval/world_model/loss_latents"] != "" and rows[-1]["actor_critic/loss_values"] != ""
    assert "collection/train/steps" not in rows[0]
    assert (offline / "media" / "videos" / "epoch_0002_imagination.gif").exists()

    # resumed after the kill, it trains epoch 2 as the unkilled run did: the same non-timing metrics
    # (a run on a static dataset: with envs, a resumed run's episodes start afresh)
    assert _epochs(killed) == [1]
    resumed = _resume(killed)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-3000:]
    assert metrics_without_timings(killed) == metrics_without_timings(offline)


def _checkpoint_epoch(run_dir: Path) -> int:
    state = run_dir / "checkpoints" / "state.pt"
    return int(torch.load(state, weights_only=True)["epoch"]) if state.exists() else 0


def _kill_after_checkpoint(proc: subprocess.Popen, run_dir: Path, epoch: int, delay: float) -> None:
    """SIGKILLs the run (its whole process group: env workers too) ``delay`` s after checkpoint ``epoch``."""
    deadline = time.time() + 300
    while _checkpoint_epoch(run_dir) < epoch and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, f"the run ended before its checkpoint {epoch}: {proc.stderr.read()[-3000:]}"
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _resume(run_dir: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "WANDB_SILENT": "true"}
    return subprocess.Popen(["bash", str(run_dir / "scripts" / "resume.sh"), *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _steps_per_epoch(run_dir: Path) -> list[int]:
    with open(run_dir / "metrics.csv", newline="") as file:
        return [int(float(row["collection/train/steps"])) for row in csv.DictReader(file)]


def _kill_when(proc: subprocess.Popen, ready, what: str) -> None:
    deadline = time.time() + 300
    while not ready() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before {what}: {proc.stderr.read()[-3000:]}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_sigkill_at_several_points_then_resume_keeps_every_step_and_finishes(tmp_path):
    """SIGKILLed during epoch 1's collection (before any epoch ends), during epoch 2's evaluation, and
    right after epoch 2's checkpoint (its training of epoch 3), resumed each time with
    scripts/resume.sh: every committed step is kept, and the epochs and the steps stored per epoch are
    those of the run that was not killed (300, 100, 100: test_smoke_run_writes_every_artifact)."""
    run_dir = tmp_path / "run"
    state = run_dir / "checkpoints" / "state.pt"
    test_store = run_dir / "dataset" / "test" / "commit.json"

    def in_first_collection() -> bool:  # the epoch-0 checkpoint is there and some of epoch 1's steps
        return state.exists() and (run_dir / "dataset" / "train" / "commit.json").exists() and \
            0 < _committed_steps(run_dir) < 300
    _kill_when(_train(run_dir), in_first_collection, "its first collection")
    kept = _committed_steps(run_dir)
    assert _checkpoint_epoch(run_dir) == 0 and 0 < kept < 300

    _kill_when(_resume(run_dir), lambda: _checkpoint_epoch(run_dir) == 1 and test_store.exists(),
               "its evaluation of epoch 2")
    assert _committed_steps(run_dir) == 300 + 100  # epoch 1 went on from the kept steps; epoch 2 collected
    assert _checkpoint_epoch(run_dir) == 1

    _kill_after_checkpoint(_resume(run_dir), run_dir, epoch=2, delay=0.3)
    assert _checkpoint_epoch(run_dir) == 2
    steps_third_kill = _committed_steps(run_dir)

    resumed = _resume(run_dir)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-3000:]
    assert _epochs(run_dir) == [1, 2, 3] and _checkpoint_epoch(run_dir) == 3
    assert _committed_steps(run_dir) == 500 >= steps_third_kill  # as the unkilled run: nothing re-collected
    assert _steps_per_epoch(run_dir) == [300, 100, 100]
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
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-3000:]
    assert _epochs(run_dir) == [1, 2, 3] and len(untouched) == 3
    assert [path.stat().st_mtime_ns for path in untouched] == before
