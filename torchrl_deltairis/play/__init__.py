"""The play tool: watch the agent, play inside the world model, browse saved episodes.

``python -m torchrl_deltairis.play [PATH] [-w | -a | -e] [-h] [-f FPS] [--record FILE.mp4|FILE.gif]``
(a run's ``scripts/play.sh`` calls it with the run folder). Modes: the agent in the real test env
(default), you in the world model (``-w``), the agent in the world model (``-a``), episode replay
(``-e``). The parts, each testable alone:

- :mod:`.loading`: models and env from a run folder or a reference-format checkpoint;
- :mod:`.dream`: the world model with a sliding-window memory, the agent one frame at a time;
- :mod:`.sources`: what each mode shows, frame after frame (no pygame);
- :mod:`.render`: a view -> the RGB image shown and recorded (no pygame);
- :mod:`.keymaps`, :mod:`.recording`, :mod:`.window` (pygame), :mod:`.cli`.
"""

from torchrl_deltairis.play.cli import build_parser, main
from torchrl_deltairis.play.loading import PlayError

__all__ = ["build_parser", "main", "PlayError"]
