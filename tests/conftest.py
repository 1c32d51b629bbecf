"""Shared fixtures: the small parity-fixture configs (tests/data) with seeded random weights; a run
folder's metrics without the timings; the learning checks' runs, started in the background with the
session."""

import csv
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from torchrl_deltairis.reference import DeltaIrisModels, configs_from_reference

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[1]


def small_models(name: str = "crafter_small", seed: int = 0) -> DeltaIrisModels:
    """Δ-IRIS models of a small fixture's config (conv width 32, LSTM 64, 2-layer transformer)."""
    config = torch.load(DATA / f"{name}.pt", map_location="cpu", weights_only=True)["config"]
    torch.manual_seed(seed)
    return DeltaIrisModels(configs_from_reference(config)).eval()


@pytest.fixture(scope="module", params=["crafter_small", "atari_small"])
def tiny_models(request) -> DeltaIrisModels:
    return small_models(request.param)


def metrics_without_timings(run_dir: Path) -> list[dict[str, str]]:
    """A run folder's metrics.csv rows without the timings (seconds, steps per second)."""
    with open(run_dir / "metrics.csv", newline="") as file:
        return [{k: v for k, v in row.items() if not k.endswith(("seconds", "per_second"))}
                for row in csv.DictReader(file)]


class LearningRuns:
    """``python train.py env=NAME params=NAME`` for each name, one after the other in a background
    thread from the start of the session: these runs are compute-bound and the rest of the suite mostly
    waits on processes, so on 2 cores the two overlap. Two intra-op threads (``OMP_NUM_THREADS=2``, the
    default on the 2-core machines where their curves were measured): a run's float rounding, hence its
    learning curve, depends on the thread count (with one thread, Recall's seed 0 ends at 0.56), not on
    how many cores the machine has."""

    def __init__(self, root: Path, names: list[str]):
        self.root, self.procs, self.done = root, {}, {name: threading.Event() for name in names}
        self.results: dict[str, tuple[int, str, Path]] = {}
        self._stopped = False
        self._thread = threading.Thread(target=self._run_all, args=(names,), daemon=True)
        self._thread.start()

    def _run_all(self, names: list[str]) -> None:
        env = {**os.environ, "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1", "OMP_NUM_THREADS": "2"}
        for name in names:
            run_dir = self.root / name
            if not self._stopped:
                proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), f"env={name}", f"params={name}",
                                         f"hydra.run.dir={run_dir}", "wandb.mode=disabled"], cwd=self.root, env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                        start_new_session=True)
                self.procs[name] = proc
                _, err = proc.communicate()
                self.results[name] = (proc.returncode, err, run_dir)
            self.done[name].set()

    def wait(self, name: str, timeout: float = 1800) -> tuple[int, str, Path]:
        """The run's exit status, its stderr and its folder, once it has ended."""
        if not self.done[name].wait(timeout):
            self.stop()
            raise TimeoutError(f"the {name} run did not end within {timeout} s")
        assert name in self.results, f"the {name} run was not started (the session is stopping)"
        return self.results[name]

    def stop(self) -> None:
        """Kills what still runs (its whole process group: env workers too)."""
        self._stopped = True
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        self._thread.join(timeout=60)


def pytest_collection_modifyitems(session, config, items):
    """The tests of the learning runs go last: the runs have the rest of the suite's time to finish."""
    items.sort(key=lambda item: item.get_closest_marker("learning_run") is not None)


@pytest.fixture(scope="session", autouse=True)
def learning_runs(request, tmp_path_factory):
    """The runs of the selected tests marked ``learning_run(NAME)``, started when the session starts."""
    names = list(dict.fromkeys(marker.args[0] for item in request.session.items
                               for marker in item.iter_markers("learning_run")))
    runs = LearningRuns(tmp_path_factory.mktemp("learning"), names) if names else None
    yield runs
    if runs is not None:
        runs.stop()
