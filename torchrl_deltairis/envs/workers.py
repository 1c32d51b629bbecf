"""Env worker processes leave SIGINT and SIGTERM to the process that started them.

A terminal's Ctrl-C sends SIGINT to the whole foreground process group, and a scheduler's preemption
(SLURM) sends SIGTERM to every process of the job: the trainer *and* each env worker. A worker that
reacts on its own dies with a ``KeyboardInterrupt`` traceback (or silently, for SIGTERM), and the
trainer's orderly shutdown then finds a dead worker and raises ``RuntimeError: At least one process
failed``. So the workers ignore both signals while the trainer is alive: the trainer's handler stops
the run and closes the workers through their pipes, and the user sees the trainer's one line.

Two layers, so that no moment of a worker's life is uncovered:

- :func:`start_forkserver` starts multiprocessing's fork server with both signals *ignored*; ignored
  dispositions survive ``exec``, so the server, and every worker it forks (it restores the handlers it
  was started with), ignore them from their first instruction;
- :func:`quiet_worker` runs first in each worker's env factory (it also covers the ``spawn`` start
  method): SIGINT ignored; SIGTERM ignored while the trainer lives, a quiet exit once it is gone (an
  orphan still stops when told to).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
from collections.abc import Iterator

__all__ = ["quiet_worker", "start_forkserver"]

_STOPS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _ignoring_stop_signals() -> Iterator[None]:
    previous = {sig: signal.getsignal(sig) for sig in _STOPS}
    try:
        for sig in _STOPS:
            signal.signal(sig, signal.SIG_IGN)
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def start_forkserver(preload: list[str]) -> None:
    """Starts the fork server (importing ``preload`` once) with SIGINT and SIGTERM ignored, so that its
    workers inherit that; nothing happens if it runs already. Only from the main thread."""
    multiprocessing.set_forkserver_preload(preload)
    with _ignoring_stop_signals():
        multiprocessing.forkserver.ensure_running()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a pid taken over by another user's process: ours is gone
        return False
    return True


def quiet_worker(trainer_pid: int) -> None:
    """In an env worker (a process other than ``trainer_pid``): SIGINT ignored; SIGTERM ignored while
    ``trainer_pid`` lives (it closes this worker), else a quiet exit. In the trainer itself: nothing."""
    if os.getpid() == trainer_pid:
        return

    def on_sigterm(signum, _frame):
        if not _alive(trainer_pid):
            sys.stderr.flush()
            os._exit(128 + signum)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, on_sigterm)
