"""Δ-IRIS training: `python train.py [hydra overrides]` (see README.md).

Crafter by default; `env=atari params=atari env.train.id=BreakoutNoFrameskip-v4` for Atari 100k;
`env=gym env.train.id=ID` for any gymnasium env with image observations; `params=smoke` for a
few-minute run. The run folder is Hydra's `outputs/YYYY-MM-DD/hh-mm-ss/`; `scripts/resume.sh` there
resumes it.

A bad value or a run folder in use stops the run before any work with one line naming what is wrong
and exit status 2 (`HYDRA_FULL_ERROR=1` shows the whole trace instead). SIGTERM (a scheduler's
preemption) and SIGINT (Ctrl-C) stop it within seconds: the env workers are shut down, the folder
keeps its last checkpoint, and one line says how to resume (exit status 128 + the signal's number).
A full disk stops it with one line (exit status 1): the last checkpoint and every committed step
are intact, and `scripts/resume.sh` goes on once space is freed. Any other error shuts the env
workers down and exits with its trace (exit status 1).
"""

import errno
import os
import signal
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig
from tqdm.auto import tqdm

from torchrl_deltairis.run import USER_ERRORS, Interrupted, build_trainer, disk_full_message, interrupted_message


_pending: list[int] = []  # a signal received while the env workers start, raised once they have


def _defer(signum, _frame):
    _pending.append(signum)


def _raise_interrupted(signum, _frame):
    raise Interrupted(signum)


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def main(cfg: DictConfig) -> None:
    signal.signal(signal.SIGTERM, _defer)
    signal.signal(signal.SIGINT, _defer)
    full_trace = os.environ.get("HYDRA_FULL_ERROR") == "1"
    try:
        trainer = build_trainer(cfg, Path.cwd(), train_script=Path(__file__))
    except USER_ERRORS as err:
        if full_trace:
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGINT, _raise_interrupted)
    try:
        try:
            if _pending:
                raise Interrupted(_pending[0])
            trainer.run()
        finally:  # on every way out: without it, an error leaves the interpreter waiting for the env workers
            trainer.close()
    except Interrupted as stop:
        tqdm.write(interrupted_message(stop.signum, trainer, Path.cwd()), file=sys.stderr)  # on its own line
        sys.exit(128 + stop.signum)
    except USER_ERRORS as err:
        if full_trace:
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:
        if err.errno != errno.ENOSPC or full_trace:
            raise
        tqdm.write(disk_full_message(err), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
