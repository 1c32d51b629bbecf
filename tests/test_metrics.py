"""metrics.csv: one row per epoch, late columns, resume keeps rows up to the checkpoint; wandb offline."""

import csv

import pytest

from torchrl_deltairis.metrics import RunLogger


def _rows(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_csv_rows_columns_and_resume(tmp_path):
    logger = RunLogger(tmp_path)
    logger.log(1, {"tokenizer/loss": 1.5})
    logger.log(2, {"tokenizer/loss": 1.0, "actor_critic/loss": 3.0})  # a component starting late
    rows = _rows(tmp_path / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert rows[0]["actor_critic/loss"] == "" and float(rows[1]["actor_critic/loss"]) == 3.0
    resumed = RunLogger(tmp_path, resume_epoch=1)  # killed after epoch 2's log, checkpoint of epoch 1
    resumed.log(2, {"tokenizer/loss": 0.9})
    rows = _rows(tmp_path / "metrics.csv")
    assert [(r["epoch"], r["tokenizer/loss"]) for r in rows] == [("1", "1.5"), ("2", "0.9")]


def test_wandb_offline_needs_no_network(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = RunLogger(tmp_path, wandb_cfg={"mode": "offline", "project": "delta-iris", "entity": None},
                       config={"seed": 0})
    logger.log(1, {"x": 1.0})
    logger.close()
    assert list(tmp_path.glob("**/offline-run-*")), "wandb wrote no offline run"
    with pytest.raises(ValueError, match="valid choices are \\['offline', 'online', 'disabled'\\]"):
        RunLogger(tmp_path, wandb_cfg={"mode": "sometimes"})
