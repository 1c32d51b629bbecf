"""Δ-IRIS training entry point: `python train.py [hydra overrides]` (see README.md).

So far it validates the configuration, writes it into the run folder, and collects the first
epoch (uniform random policy, `params.collection.train.config.num_steps_first_epoch` steps) from the
real environments into the persistent episode store `dataset/train/`. The model training loop lands
with the training-run issue.
"""

from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from torchrl_deltairis.factory import make_train_collection, resolve_device, validate_env_configs


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def main(cfg: DictConfig) -> None:
    validate_env_configs(cfg)
    device = resolve_device(cfg.params.common.device)
    run_dir = Path.cwd()  # hydra.job.chdir: outputs/YYYY-MM-DD/hh-mm-ss
    (run_dir / "config").mkdir(exist_ok=True)
    OmegaConf.save(cfg, run_dir / "config" / "trainer.yaml", resolve=True)
    seed = int(cfg.params.common.seed)
    torch.manual_seed(seed)
    collector, store = make_train_collection(cfg, run_dir, seed)
    steps = cfg.params.collection.train.config.num_steps_first_epoch
    print(f"run folder {run_dir} | device {device} | collecting {steps} random steps into {store.directory}")
    stats = collector.collect(steps, desc="epoch 1 collection")
    collector.shutdown()
    print(f"{store} | {stats.summary('train/')}")


if __name__ == "__main__":
    main()
