"""Pure drawing: a view (frame + header facts) -> the RGB image the window shows and recordings store.

No pygame here (text is drawn with PIL's bundled font), so the layout is testable on arrays and the
recordings hold exactly what the window showed.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from torchrl_deltairis.play.sources import View

__all__ = ["TEXT_COLOUR", "HEADER_BACKGROUND", "header_lines", "header_height", "compose"]

TEXT_COLOUR = (255, 255, 255)
HEADER_BACKGROUND = (0, 0, 0)
RECORDING_COLOUR = (230, 40, 40)
_PAD = 6
_ALIGN = 16  # image heights are multiples of 16, as MP4 encoders want


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: a scalable bundled font
    except TypeError:
        return ImageFont.load_default()  # older Pillow: the small bitmap font


def font_size(width: int) -> int:
    """24 px at the reference's 768 px window, never below 12 px."""
    return max(12, round(24 * width / 768))


def _number(x: float | None, fmt: str = "{:.2f}") -> str:
    return "n/a" if x is None else fmt.format(x)


def header_lines(view: View, *, paused: bool = False, recording: bool = False) -> list[str]:
    """The header's text: mode, time step, action, reward, return, value, end, status."""
    status = [*view.status, *(["paused"] if paused else []), *(["REC"] if recording else [])]
    return [view.title, f"t: {view.t}", f"action: {view.action}",
            f"reward: {_number(view.reward, '{:+.2f}')}", f"return: {_number(view.episode_return)}",
            f"value: {_number(view.value)}", f"end: {view.end}", "  ".join(status)]


def _columns(width: int) -> int:
    return 2 if width >= 480 else 1


def header_height(width: int, num_lines: int = 8) -> int:
    """Pixels of a header of ``num_lines`` lines at this window width (a multiple of 16)."""
    rows = -(-num_lines // _columns(width))
    height = 2 * _PAD + rows * round(font_size(width) * 1.25)
    return -(-height // _ALIGN) * _ALIGN


def compose(view: View, size: int, *, header: bool, paused: bool = False,
            recording: bool = False) -> np.ndarray:
    """uint8 ``[header + size, size, 3]``: the frame scaled to ``size`` (nearest, pixels stay crisp)
    under an optional header (white text on black, a white frame around it)."""
    frame = Image.fromarray(view.frame).resize((size, size), Image.NEAREST)
    if not header:
        return np.asarray(frame)
    lines = header_lines(view, paused=paused, recording=recording)
    top = header_height(size, len(lines))
    image = Image.new("RGB", (size, top + size), HEADER_BACKGROUND)
    image.paste(frame, (0, top))
    draw = ImageDraw.Draw(image)
    draw.fontmode = "1"  # no anti-aliasing: crisp text, drawn in exactly TEXT_COLOUR
    draw.rectangle((0, 0, size - 1, top - 1), outline=TEXT_COLOUR)
    fsize, columns = font_size(size), _columns(size)
    rows = -(-len(lines) // columns)
    for i, line in enumerate(lines):
        col, row = divmod(i, rows)
        colour = RECORDING_COLOUR if line.endswith("REC") and recording else TEXT_COLOUR
        draw.text((_PAD + col * size // columns, _PAD + row * round(fsize * 1.25)), line, fill=colour,
                  font=_font(fsize))
    return np.asarray(image)
