"""Per-epoch metrics: always ``metrics.csv`` in the run folder, plus wandb and TensorBoard through
TorchRL's loggers.

``metrics.csv`` has one row per epoch and one column per metric ever logged (a component that starts
late leaves its cells empty before); it is rewritten atomically each epoch, so a kill never leaves a
torn file, and a resumed run keeps the rows up to its checkpoint. wandb runs offline by default (no
network: ``wandb sync`` uploads later); ``mode: online`` streams, ``mode: disabled`` turns it off.
The environment variables ``WANDB_MODE`` and ``WANDB_DIR`` override the config, as wandb's users expect.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torchrl_deltairis.data.atomic_io import write_bytes_atomic

WANDB_MODES = ("offline", "online", "disabled")


class MetricsTable:
    """``metrics.csv``: rows keyed by epoch, columns in first-seen order."""

    def __init__(self, path: str | Path, keep_until_epoch: int | None = None):
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []
        self.columns: list[str] = ["epoch"]
        if self.path.exists() and keep_until_epoch is not None:
            with open(self.path, newline="") as file:
                reader = csv.DictReader(file)
                self.columns = list(reader.fieldnames or ["epoch"])
                self.rows = [r for r in reader if int(r["epoch"]) <= keep_until_epoch]

    def add(self, epoch: int, metrics: Mapping[str, Any]) -> None:
        row = {"epoch": epoch, **metrics}
        self.columns += [key for key in row if key not in self.columns]
        self.rows = [r for r in self.rows if int(r["epoch"]) != epoch] + [row]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self.columns, restval="")
        writer.writeheader()
        writer.writerows(self.rows)
        write_bytes_atomic(self.path, text.getvalue().encode())


class RunLogger:
    """Logs a dict of scalars per epoch to ``metrics.csv``, wandb (TorchRL's ``WandbLogger``) and,
    optionally, TensorBoard (TorchRL's ``TensorboardLogger``)."""

    def __init__(self, run_dir: str | Path, *, wandb_cfg: Mapping[str, Any] | None = None, tensorboard: bool = False,
                 config: Mapping[str, Any] | None = None, resume_epoch: int | None = None):
        run_dir = Path(run_dir)
        self.table = MetricsTable(run_dir / "metrics.csv", keep_until_epoch=resume_epoch)
        self.loggers = []
        wandb_cfg = dict(wandb_cfg or {"mode": "disabled"})
        mode = wandb_cfg.pop("mode", "offline")
        if mode not in WANDB_MODES:
            raise ValueError(f"wandb.mode={mode!r}; valid choices are {list(WANDB_MODES)}")
        env_mode = os.environ.get("WANDB_MODE")  # what wandb's users expect: the environment wins
        if env_mode in ("disabled", "offline", "online", "dryrun"):
            mode = "offline" if env_mode == "dryrun" else env_mode
        save_dir = os.environ.get("WANDB_DIR") or str(run_dir)
        if mode != "disabled":
            from torchrl.record.loggers.wandb import WandbLogger

            settings = {k: v for k, v in wandb_cfg.items() if v is not None and k != "project"}
            self.loggers.append(WandbLogger(exp_name=settings.pop("name", None) or run_dir.name,
                                            offline=mode == "offline", save_dir=save_dir,
                                            project=wandb_cfg.get("project"), config=dict(config or {}),
                                            log_env_packages=False, **settings))
        if tensorboard:
            try:
                import torch.utils.tensorboard  # noqa: F401
            except ImportError as err:
                raise ImportError("tensorboard=true needs the tensorboard package: "
                                  "pip install 'torchrl_deltairis[tensorboard]' (or pip install tensorboard)") from err
            from torchrl.record.loggers.tensorboard import TensorboardLogger

            self.loggers.append(TensorboardLogger(exp_name="tensorboard", log_dir=str(run_dir)))

    def log(self, epoch: int, metrics: Mapping[str, float]) -> None:
        self.table.add(epoch, metrics)
        for logger in self.loggers:
            for name, value in metrics.items():
                logger.log_scalar(name, value, step=epoch)

    def close(self) -> None:
        """Ends the wandb run (its files are complete after this) and flushes TensorBoard."""
        for logger in self.loggers:
            experiment = getattr(logger, "experiment", None)
            for end in ("finish", "close"):
                if hasattr(experiment, end):
                    getattr(experiment, end)()
                    break
