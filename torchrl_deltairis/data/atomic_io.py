"""Crash-safe small-file writes: write a temporary file next to the target, then ``os.replace`` it.

``os.replace`` is atomic on POSIX file systems, so a reader (or a process restarted after a
SIGKILL) sees either the old file or the new one, never a torn mix. With ``fsync=True`` the data
and the directory entry are also flushed to the device (protection against power loss, not only
against a killed process).
"""

import json
import os
from pathlib import Path
from collections.abc import Callable
from typing import Any, BinaryIO

import torch


def fsync_path(path: Path) -> None:
    """Flush a file's (or a directory's) dirty pages to the device."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_atomic(path: Path, write: Callable[[BinaryIO], object], fsync: bool) -> None:
    """Writes a temporary file next to ``path`` with ``write``, then ``os.replace``s it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as file:
            write(file)
            file.flush()
            if fsync:
                os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk, a signal: the old file stays, the partial one goes
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_path(path.parent)


def write_bytes_atomic(path: Path, data: bytes, *, fsync: bool = False) -> None:
    """Replace ``path`` by ``data`` atomically."""
    _replace_atomic(path, lambda file: file.write(data), fsync)


def write_json_atomic(path: Path, obj: Any, *, fsync: bool = False) -> None:
    """Replace ``path`` by the JSON text of ``obj`` atomically."""
    write_bytes_atomic(path, json.dumps(obj, indent=1).encode(), fsync=fsync)


def read_json(path: Path) -> Any:
    with open(path) as file:
        return json.load(file)


def torch_save_atomic(obj: Any, path: Path, *, fsync: bool = True) -> None:
    """``torch.save`` that never leaves a truncated file behind (checkpoints, sampler counts)."""
    _replace_atomic(path, lambda file: torch.save(obj, file), fsync)
