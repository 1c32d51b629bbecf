"""One process per run folder, the CLI's one-line errors, SIGINT / SIGTERM, the environment's WANDB_MODE."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import RUN_ENV, SHORT_EPISODES, TINY
from torchrl_deltairis.metrics import RunLogger
from torchrl_deltairis.runlock import RunInUseError, RunLock

ROOT = Path(__file__).resolve().parents[1]
# a whole run at tiny budgets on the Reach env, whose workers start in a fraction of Crafter's time
RUN = (*TINY, "env=gym", *SHORT_EPISODES["gym"])


def test_a_folder_in_use_is_refused_naming_its_process_and_a_killed_holder_does_not_block(tmp_path):
    lock = RunLock(tmp_path)
    with pytest.raises(RunInUseError, match=f"in use by process {os.getpid()} on "):
        RunLock(tmp_path)
    lock.release()
    RunLock(tmp_path).release()  # free again
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from torchrl_deltairis.runlock import RunLock; "
                               f"RunLock({str(tmp_path)!r}); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunInUseError, match=f"process {holder.pid} on"):
        RunLock(tmp_path)
    holder.kill()
    holder.wait()
    RunLock(tmp_path).release()  # the kernel dropped the killed process's lock


def test_wandb_mode_from_the_environment_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    logger = RunLogger(tmp_path, wandb_cfg={"mode": "offline"})
    assert logger.loggers == []  # no wandb logger although the config says offline
    logger.close()


def _cli(run_dir: Path, *overrides: str, env_extra=None, stderr=subprocess.PIPE) -> subprocess.Popen:
    env = {**os.environ, **RUN_ENV, **(env_extra or {})}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={run_dir}",
                             "wandb.mode=disabled", *overrides], cwd=run_dir.parent, env=env,
                            stdout=subprocess.DEVNULL, stderr=stderr, text=True, start_new_session=True)


def test_the_cli_answers_a_bad_value_in_one_line_and_exits_2(tmp_path):
    notes = tmp_path / "notes.pt"
    notes.write_text("not a checkpoint")
    cases = {"params.training.learning_rate=abc": "error: params.training.learning_rate='abc'; expected a number > 0",
             "params.world_model.transformer_config.max_blocks=3":
                 "error: params.world_model.transformer_config.max_blocks=3; ",
             f"params.initialization.path_to_checkpoint={notes}":
                 f"error: params.initialization.path_to_checkpoint='{notes}' is not a "}
    procs = {override: _cli(tmp_path / f"run{i}", "params=smoke", override)
             for i, override in enumerate(cases)}
    for override, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, (override, err[-3000:])
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(cases[override]), (override, err[-3000:])
        assert "Traceback" not in err


def _wait_for(predicate, proc, timeout=300):
    deadline = time.time() + timeout
    while not predicate() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read()[-3000:]


def _steps(run_dir: Path) -> int:
    commit = run_dir / "dataset" / "train" / "commit.json"
    return json.loads(commit.read_text())["num_rows"] if commit.exists() else 0


def _group_gone(pgid: int, timeout: float = 20) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_sigint_and_sigterm_stop_the_run_its_workers_and_leave_it_resumable(tmp_path, request):
    """SIGINT to the whole process group after the first checkpoint (as a terminal's Ctrl-C: the trainer
    and every env worker get it); then SIGTERM to the group of `scripts/resume.sh` (which `exec`s the
    trainer; as a scheduler's preemption): each stops within seconds with its one line and no trace, no
    worker is left, the lock is free and the checkpoint is there."""
    failing = "test_an_unexpected_error_in_training_stops_the_run_and_its_workers"
    if any(getattr(item, "originalname", None) == failing for item in request.session.items):
        request.getfixturevalue("failing_run")  # it goes on beside this test's runs
    run_dir = tmp_path / "run"
    state = run_dir / "checkpoints" / "state.pt"
    proc = _cli(run_dir, *RUN)
    _wait_for(state.exists, proc)
    os.killpg(proc.pid, signal.SIGINT)
    start = time.time()
    _, err = proc.communicate(timeout=60)
    assert time.time() - start < 30 and proc.returncode == 128 + signal.SIGINT, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("stopped by SIGINT during epoch ") and "scripts/resume.sh resumes it" in last, err[-3000:]
    assert "Traceback" not in err and "Error" not in err, err[-3000:]  # nor a worker's
    assert _group_gone(proc.pid)  # the env workers were shut down with it

    resumed = subprocess.Popen(["bash", str(run_dir / "scripts" / "resume.sh")], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               env={**os.environ, **RUN_ENV})
    epoch = int(torch.load(state, weights_only=True)["epoch"])
    before = _steps(run_dir)
    _wait_for(lambda: _steps(run_dir) > before, resumed)  # the resumed run is collecting
    os.killpg(resumed.pid, signal.SIGTERM)  # the script's group: the trainer (exec) and its env workers
    _, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("stopped by SIGTERM during epoch "), err[-3000:]
    assert "Traceback" not in err and "Error" not in err, err[-3000:]
    assert _group_gone(resumed.pid)
    assert int(torch.load(state, weights_only=True)["epoch"]) >= epoch
    RunLock(run_dir).release()  # nobody holds the folder


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_env_workers_start_stops_the_run_once_they_have(tmp_path, stop):
    """The signal reaches the group while the trainer starts its env workers (its config is written
    just before; each env is made to take 2 s to start, as Crafter's take seconds): a line says at
    once that it will stop, the workers start and are shut down, and the run ends with its one line,
    no trace, and exit status 128 + the signal."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(  # every env takes 2 s to start (Crafter's 48 take over 100 s)
        "import time\n"
        "import torchrl_deltairis.envs as envs\n"
        "_make = envs._make_base_env\n"
        "def _slow(*args, **kwargs):\n"
        "    time.sleep(2)\n"
        "    return _make(*args, **kwargs)\n"
        "envs._make_base_env = _slow\n")
    path = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
    run_dir = tmp_path / "run"
    proc = _cli(run_dir, *RUN, env_extra={"PYTHONPATH": path})
    _wait_for((run_dir / "config" / "trainer.yaml").exists, proc)
    os.killpg(proc.pid, stop)
    _, err = proc.communicate(timeout=120)
    name = signal.Signals(stop).name
    assert proc.returncode == 128 + stop, err[-3000:]
    lines = [line for line in err.splitlines() if line.strip() and "\r" not in line and "it/s" not in line]
    # said at once (an import warning of this machine's torch build may come before it)
    assert f"{name} received: stopping as soon as the env workers have started" in lines, err[-3000:]
    assert err.strip().splitlines()[-1].startswith(f"stopped by {name} during epoch 0; "), err[-3000:]
    assert "Traceback" not in err and "Error" not in err, err[-3000:]
    assert _group_gone(proc.pid)


@pytest.fixture(scope="module")
def failing_run(tmp_path_factory):
    """A whole run whose epoch 2 raises (injected through a ``sitecustomize`` on its path), started in
    the background: by the SIGINT test when the test below is also selected, so that it shares the 2
    cores with that test's runs (one process at a time). Yields the process, its run folder and the
    file its stderr goes to."""
    tmp = tmp_path_factory.mktemp("failing")
    hook = tmp / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import sys\n"
        "if sys.argv and sys.argv[0].endswith('train.py'):  # the trainer, not its env workers' processes\n"
        "    from torchrl_deltairis.trainer import Trainer\n"
        "    _run_epoch = Trainer.run_epoch\n"
        "    def run_epoch(self, epoch):\n"
        "        if epoch == 2:\n"
        "            raise RuntimeError('injected failure in epoch 2')\n"
        "        return _run_epoch(self, epoch)\n"
        "    Trainer.run_epoch = run_epoch\n")
    path = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
    run_dir, err = tmp / "run", tmp / "stderr"
    with open(err, "w") as stderr:
        proc = _cli(run_dir, *RUN, env_extra={"PYTHONPATH": path}, stderr=stderr)
    yield proc, run_dir, err
    if proc.poll() is None:  # the test failed before it ended
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
def test_an_unexpected_error_in_training_stops_the_run_and_its_workers(failing_run):
    """A bug, an out-of-memory or any other error raised during an epoch (here injected into epoch 2
    through a ``sitecustomize`` on the run's path) ends the run with its trace and exit status 1 and
    shuts the env workers down: before, the interpreter waited for them at exit, forever."""
    proc, run_dir, stderr = failing_run
    proc.wait(timeout=300)
    err = stderr.read_text()
    assert proc.returncode == 1 and "RuntimeError: injected failure in epoch 2" in err, err[-3000:]
    assert _group_gone(proc.pid)  # no env worker left behind
    assert int(torch.load(run_dir / "checkpoints" / "state.pt", weights_only=True)["epoch"]) == 1
