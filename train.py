"""Δ-IRIS training: `python train.py [hydra overrides]` (README.md "Train").

Crafter by default; `env=atari params=atari env.train.id=Breakout` for Atari 100k; `env=atari_cpu
params=atari_cpu` for Atari on a laptop; `params=smoke` for a run of a minute or two. The run folder is
Hydra's `outputs/YYYY-MM-DD/hh-mm-ss/`; `scripts/resume.sh` there resumes it. Signals, errors and exit
statuses: torchrl_deltairis/cli.py.
"""

import signal

_pending: list[int] = []  # SIGINT / SIGTERM during the imports below (seconds): acted on once they are done
for _stop in (signal.SIGINT, signal.SIGTERM):
    signal.signal(_stop, lambda signum, _frame: _pending.append(signum))

from pathlib import Path  # noqa: E402

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from torchrl_deltairis.cli import train  # noqa: E402


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def main(cfg: DictConfig) -> None:
    train(cfg, Path.cwd(), Path(__file__), _pending)


if __name__ == "__main__":
    main()
