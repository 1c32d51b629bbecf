"""Δ-IRIS training entry point: `python train.py [hydra overrides]` (see README.md).

For now it resolves and validates the configuration (environments included) and prints it; the
training loop lands with the training-run issue.
"""

import hydra
from omegaconf import DictConfig, OmegaConf

from torchrl_deltairis.envs import env_config


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def main(cfg: DictConfig) -> None:
    OmegaConf.resolve(cfg)
    for split in ("train", "test"):
        env_config(OmegaConf.to_container(cfg.env[split]))  # unknown ids or keys fail here, before any work
    print(OmegaConf.to_yaml(cfg))


if __name__ == "__main__":
    main()
