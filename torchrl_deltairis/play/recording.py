"""Recording what the window shows to a GIF (PIL, always available) or an MP4 (imageio + an encoder).

MP4 needs imageio with either imageio-ffmpeg (a bundled ffmpeg) or PyAV; neither is a dependency of
this project, so :func:`check_record_path` says what to install before any window opens.
"""

from __future__ import annotations

import importlib.util
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image

from torchrl_deltairis.play.loading import PlayError

__all__ = ["FORMATS", "mp4_backend", "check_record_path", "Recorder", "clip_path"]

FORMATS = (".gif", ".mp4")
MP4_HELP = ("writing MP4 needs imageio with an encoder: `pip install imageio imageio-ffmpeg` "
            "(or `pip install av`); a .gif needs nothing more")


def mp4_backend() -> str | None:
    """``"ffmpeg"`` (imageio-ffmpeg), ``"pyav"`` (PyAV) or None when no MP4 encoder is installed."""
    if importlib.util.find_spec("imageio") is None:
        return None
    if importlib.util.find_spec("imageio_ffmpeg") is not None:
        return "ffmpeg"
    return "pyav" if importlib.util.find_spec("av") is not None else None


def check_record_path(path: Path) -> None:
    """Fails early (before the window opens) on an unknown extension or a missing MP4 encoder."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise PlayError(f"--record {str(path)!r}: expected a file ending in {' or '.join(FORMATS)}")
    if suffix == ".mp4" and mp4_backend() is None:
        raise PlayError(f"--record {str(path)!r}: {MP4_HELP}")
    if not path.parent.exists():
        raise PlayError(f"--record {str(path)!r}: the folder {path.parent} does not exist")


def clip_path(media_dir: Path, suffix: str) -> Path:
    """``<media>/recordings/<timestamp><suffix>`` for a clip started with the "," key."""
    return media_dir / "recordings" / f"{datetime.now():%Y-%m-%d_%H-%M-%S}{suffix}"


class _Mp4Writer:
    """The installed MP4 encoder behind one ``write(frame)`` / ``close()`` interface."""

    def __init__(self, path: Path, fps: float) -> None:
        if mp4_backend() == "ffmpeg":
            import imageio.v2 as imageio

            self._writer = imageio.get_writer(path, format="FFMPEG", fps=fps, codec="libx264",
                                              macro_block_size=16)
            self._write = self._writer.append_data
        else:
            import imageio.v3 as iio

            self._writer = iio.imopen(path, "w", plugin="pyav")
            self._writer.init_video_stream("libx264", fps=fps)
            self._write = self._writer.write_frame

    def write(self, frame: np.ndarray) -> None:
        self._write(frame)

    def close(self) -> None:
        self._writer.close()


class Recorder:
    """Frames (uint8 ``[H, W, 3]``, all of one size) to ``path`` at ``fps``; call ``close`` to finish.

    MP4 frames are streamed to the encoder; GIF frames are kept as 8-bit palette images (1 byte per
    pixel) and written by ``close``.
    """

    def __init__(self, path: Path, fps: float) -> None:
        check_record_path(path)
        self.path, self.fps, self.num_frames = path, fps, 0
        self._gif: list[Image.Image] = []
        self._mp4: _Mp4Writer | None = None
        if path.suffix.lower() == ".mp4":
            self._mp4 = _Mp4Writer(path, fps)

    def add(self, frame: np.ndarray) -> None:
        if self._mp4 is not None:
            self._mp4.write(frame)
        else:
            self._gif.append(Image.fromarray(frame).convert("P", palette=Image.ADAPTIVE))
        self.num_frames += 1

    def close(self) -> Path | None:
        """Writes the file; returns its path, or None when nothing was recorded (no file is written)."""
        if self._mp4 is not None:
            self._mp4.close()
            return self.path if self.num_frames else None
        if not self._gif:
            return None
        first, *rest = self._gif
        duration = max(1, round(1000 / self.fps))  # milliseconds per frame
        first.save(self.path, save_all=True, append_images=rest, duration=duration, loop=0)
        self._gif = []
        return self.path
