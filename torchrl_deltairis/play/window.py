"""The pygame window: events in, composed frames out; pause, reset, clips, recording, screenshot.

pygame is an optional extra (``pip install -e ".[play]"``): :func:`require_pygame` imports it with a
message saying so. Only the display is initialised (no audio). Headless (``SDL_VIDEODRIVER=dummy``)
the loop is the same; ``key_script`` posts key presses into pygame's event queue at given ticks, so
tests drive the tool through the very event handling a user goes through.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Protocol

import numpy as np

from torchrl_deltairis.play.loading import PlayError
from torchrl_deltairis.play.recording import Recorder, clip_path, mp4_backend
from torchrl_deltairis.play.render import compose, header_height
from torchrl_deltairis.play.sources import View

__all__ = ["PYGAME_MISSING", "require_pygame", "init_display", "Source", "WindowOptions", "run_window"]

PYGAME_MISSING = ('the play tool needs pygame, an optional extra: pip install -e ".[play]" '
                  "(or pip install pygame)")


def require_pygame() -> ModuleType:
    """``import pygame``, or a :class:`PlayError` saying how to install it."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        import pygame
    except ImportError as err:
        raise PlayError(PYGAME_MISSING) from err
    return pygame


class Source(Protocol):
    """What a mode shows (see :mod:`torchrl_deltairis.play.sources`)."""

    def reset(self) -> View: ...

    def tick(self, key_names: list[str], playing: bool) -> View: ...


@dataclass
class WindowOptions:
    """How the window runs (the CLI's options)."""

    size: int = 768
    fps: float = 5.0
    header: bool = False
    record: Path | None = None
    screenshot: Path | None = None
    max_steps: int | None = None
    media_dir: Path = Path("media")
    held_keys: tuple[str, ...] = ()  # keys acting while held (the user's keymap), first match wins
    start_paused: bool = False
    key_script: Mapping[int, Sequence[str]] = field(default_factory=dict)


def init_display(pygame: ModuleType) -> None:
    """Initialises pygame's display (not audio), or a :class:`PlayError` saying how to run headless."""
    try:
        pygame.display.init()
    except pygame.error as err:
        raise PlayError(f"cannot open a window ({err}). Without a display, run headless with "
                        "SDL_VIDEODRIVER=dummy and --max-steps N (with --screenshot FILE.png or "
                        "--record FILE.gif)") from err


def _open_display(pygame: ModuleType, width: int, height: int):
    init_display(pygame)
    try:
        screen = pygame.display.set_mode((width, height))
    except pygame.error as err:
        raise PlayError(f"cannot open a {width}x{height} window ({err})") from err
    pygame.display.set_caption("Δ-IRIS play")
    return screen


class _Session:
    """The loop's state: pause, pending reset, the session recording and the clip being recorded."""

    def __init__(self, options: WindowOptions) -> None:
        self.options = options
        self.paused, self.reset, self.stop = options.start_paused, False, False
        self.record = Recorder(options.record, options.fps) if options.record else None
        self.clip: Recorder | None = None

    def toggle_clip(self) -> None:
        if self.clip is None:
            path = clip_path(self.options.media_dir, ".mp4" if mp4_backend() else ".gif")
            path.parent.mkdir(parents=True, exist_ok=True)
            self.clip = Recorder(path, self.options.fps)
        else:
            self._close_clip()

    def _close_clip(self) -> None:
        if self.clip is not None:
            written = self.clip.close()
            if written is not None:
                print(f"saved clip {written}")
            self.clip = None

    def control(self, name: str) -> bool:
        """Handles a control key; False when the key is not one (it goes to the mode)."""
        if name == "escape":
            self.stop = True
        elif name == "return":
            self.reset = True
        elif name == ".":
            self.paused = not self.paused
        elif name == ",":
            self.toggle_clip()
        else:
            return False
        return True

    def add(self, image: np.ndarray) -> None:
        for recorder in (self.record, self.clip):
            if recorder is not None:
                recorder.add(image)

    def close(self) -> None:
        self._close_clip()
        if self.record is not None:
            written = self.record.close()
            print(f"saved recording {written}" if written else "nothing recorded")


def _key_names(pygame: ModuleType, session: _Session, held: tuple[str, ...]) -> list[str]:
    """Names of the keys pressed since the last tick (control keys handled), or the first held key."""
    names = []
    for event in pygame.event.get():
        if event.type == pygame.QUIT:
            session.stop = True
        elif event.type == pygame.KEYDOWN:
            name = pygame.key.name(event.key)
            if not session.control(name):
                names.append(name)
    if not names and held:
        pressed = pygame.key.get_pressed()
        names = [name for name in held if pressed[pygame.key.key_code(name)]][:1]
    return names


def run_window(source: Source, options: WindowOptions) -> np.ndarray:
    """Runs the window until it is closed, Escape, or ``max_steps`` ticks; returns the last image."""
    pygame = require_pygame()
    height = options.size + (header_height(options.size) if options.header else 0)
    screen = _open_display(pygame, options.size, height)  # first: without a display, fail before any work
    session: _Session | None = None
    try:
        session = _Session(options)
        image = compose(source.reset(), options.size, header=options.header)
        session.add(image)
        clock, tick = pygame.time.Clock(), 0
        while not session.stop:
            for name in options.key_script.get(tick, ()):
                pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.key.key_code(name)))
            names = _key_names(pygame, session, options.held_keys)
            if session.reset:
                view, session.reset = source.reset(), False
            else:
                view = source.tick(names, playing=not session.paused)
            image = compose(view, options.size, header=options.header, paused=session.paused,
                            recording=session.clip is not None)
            pygame.surfarray.blit_array(screen, image.transpose(1, 0, 2))
            pygame.display.flip()
            if not session.paused or names:  # paused: only what the keys changed (replay browsing)
                session.add(image)
            clock.tick(options.fps)
            tick += 1
            session.stop |= options.max_steps is not None and tick >= options.max_steps
        if options.screenshot is not None:
            pygame.image.save(screen, str(options.screenshot))
    finally:
        if session is not None:
            session.close()
        pygame.display.quit()
    sys.stdout.flush()
    return image
