"""One process per run folder: an advisory ``flock`` on ``<run>/.lock``, holding the owner's pid.

The kernel drops a ``flock`` when its process dies, however it dies (SIGKILL included), so a lock
left by a killed trainer never blocks a resume; a live one refuses a second trainer (or a second
``scripts/resume.sh``) at once, naming the process that holds the folder.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

__all__ = ["RunInUseError", "RunLock"]

LOCK_FILE = ".lock"


class RunInUseError(RuntimeError):
    """Another live process holds the run folder."""


class RunLock:
    """``RunLock(run_dir)`` takes the folder's lock or raises :class:`RunInUseError`; ``release()``."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunInUseError(f"the run folder {self.path.parent} is in use by process {owner}; stop it "
                                "first (a folder is trained by one process at a time)") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} on {socket.gethostname()}".encode())
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
