"""Δ-IRIS training: `python train.py [hydra overrides]` (see README.md).

Crafter by default; `env=atari params=atari env.train.id=BreakoutNoFrameskip-v4` for Atari 100k;
`env=gym env.train.id=ID` for any gymnasium env with image observations; `params=smoke` for a
few-minute run. The run folder is Hydra's `outputs/YYYY-MM-DD/hh-mm-ss/`; `scripts/resume.sh` there
resumes it.
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from torchrl_deltairis.run import build_trainer


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def main(cfg: DictConfig) -> None:
    trainer = build_trainer(cfg, Path.cwd(), train_script=Path(__file__))
    try:
        trainer.run()
    finally:
        trainer.close()


if __name__ == "__main__":
    main()
