"""What ``python train.py`` does around a run: signals, the user's errors, the lines printed, exit statuses.

- A bad value or a run folder in use stops the run before any work with one line naming what is wrong,
  exit status 2 (``HYDRA_FULL_ERROR=1`` shows the whole trace instead).
- SIGINT (Ctrl-C: the terminal sends it to the whole process group) and SIGTERM (a scheduler's
  preemption: SLURM sends it to every process of the job) stop the run within seconds: the env workers
  leave them to the trainer (:mod:`torchrl_deltairis.envs.workers`), the trainer shuts them down, the
  folder keeps its last checkpoint, and one line says how to resume; exit status 128 + the signal's
  number. A signal while the env workers start is acted on once they have (a line says so at once).
- A full disk stops it with one line, exit status 1: the last checkpoint and every committed step are
  intact, and ``scripts/resume.sh`` goes on once space is freed.
- Any other error shuts the env workers down and exits with its trace (exit status 1).
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from pathlib import Path

import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm

from torchrl_deltairis.checkpoint import STATE_FILE, CheckpointError
from torchrl_deltairis.build.lifecycle import build_trainer
from torchrl_deltairis.runlock import RunInUseError

__all__ = ["Interrupted", "USER_ERRORS", "disk_full_message", "interrupted_message", "train"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# Errors that are the user's to fix (a bad value, a wrong file, a folder in use): the CLI prints their
# message alone. Anything else is a bug and keeps its trace.
USER_ERRORS = (ValueError, KeyError, CheckpointError, RunInUseError, FileNotFoundError)


class Interrupted(BaseException):
    """Raised in the trainer's process by SIGTERM / SIGINT (:func:`train` installs the handlers)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def disk_full_message(err: OSError) -> str:
    """The one line printed when the disk fills up under a run."""
    where = f" while writing {err.filename}" if err.filename else ""
    return (f"error: no space left on the device{where}; the last checkpoint and every committed step are "
            "intact: free some space and resume with scripts/resume.sh")


def interrupted_message(signum: int, epoch: int, run_dir: Path) -> str:
    """The one line printed when a signal stops a run during ``epoch`` (0: before its first)."""
    name = signal.Signals(signum).name
    state = run_dir / "checkpoints" / STATE_FILE
    if state.exists():
        saved = int(torch.load(state, map_location="cpu", weights_only=True)["epoch"])
        where = (f"scripts/resume.sh resumes it after epoch {saved}" if saved else
                 "scripts/resume.sh resumes it from its start, keeping the steps it collected")
    else:
        where = "it had not started: scripts/resume.sh starts it"
    return f"stopped by {name} during epoch {epoch}; the env workers are shut down; {where}"


def _on_stop_signals(handler) -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)


def _user_error(err: BaseException, full_trace: bool) -> None:
    if full_trace:
        raise err
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)


def train(cfg: DictConfig, run_dir: Path, train_script: Path, pending: list[int]) -> None:
    """Builds the run of ``cfg`` in ``run_dir`` and trains it, as described above. ``pending``: the
    signals received before this was called (``train.py`` defers them from its first line)."""
    def defer(signum, _frame) -> None:
        if not pending:
            print(f"{signal.Signals(signum).name} received: stopping as soon as the env workers have started",
                  file=sys.stderr, flush=True)
        pending.append(signum)

    def stop(signum, _frame) -> None:
        raise Interrupted(signum)

    _on_stop_signals(defer)
    if pending:  # during the imports: nothing was built
        print(f"stopped by {signal.Signals(pending[0]).name} before the run started", file=sys.stderr)
        sys.exit(128 + pending[0])
    full_trace = os.environ.get("HYDRA_FULL_ERROR") == "1"
    try:
        trainer = build_trainer(cfg, run_dir, train_script=train_script)
    except USER_ERRORS as err:
        _user_error(err, full_trace)
    _on_stop_signals(stop)
    try:
        try:
            if pending:
                raise Interrupted(pending[0])
            trainer.run()
        finally:  # on every way out: without it, an error leaves the interpreter waiting for the env workers
            _on_stop_signals(lambda signum, _frame: pending.append(signum))  # a second Ctrl-C lets it finish
            trainer.close()
    except Interrupted as interrupted:
        message = interrupted_message(interrupted.signum, trainer.current_epoch, run_dir)
        tqdm.write(message, file=sys.stderr)  # on its own line, below the progress bars
        sys.exit(128 + interrupted.signum)
    except USER_ERRORS as err:
        _user_error(err, full_trace)
    except OSError as err:
        if err.errno != errno.ENOSPC or full_trace:
            raise
        tqdm.write(disk_full_message(err), file=sys.stderr)
        sys.exit(1)
