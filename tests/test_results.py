"""results.json: the record a finished run leaves for the benchmarks, and `params.common.resume`."""

import json
import math

import pytest

from torchrl_deltairis.envs import CRAFTER_ACHIEVEMENTS
from torchrl_deltairis.results import crafter_summary, run_results, write_results
from torchrl_deltairis.build.lifecycle import should_resume
from torchrl_deltairis.checked import parse
from torchrl_deltairis.config import CommonConfig

CRAFTER = {"id": "crafter", "family": "crafter", "size": 64, "max_episode_steps": 10000, "reward": True}


def _crafter_row(prefix: str, episodes: int, rate: float) -> dict:
    row = {f"{prefix}episodes": episodes}
    row.update({f"{prefix}achievements/{name}": rate for name in CRAFTER_ACHIEVEMENTS})
    return row


def test_crafter_train_rates_weight_each_epoch_by_its_episodes():
    prefix = "collection/train/"
    rows = [_crafter_row(prefix, 1, 100.0), {"epoch": 2}, _crafter_row(prefix, 3, 0.0),
            {f"{prefix}episodes": "", f"{prefix}achievements/collect_coal": ""}]  # csv: empty cells
    summary = crafter_summary(rows, prefix)
    assert summary["episodes"] == 4
    assert summary["success_rates"]["collect_wood"] == pytest.approx(25.0)
    assert summary["score"] == pytest.approx(25.0)  # every rate equal: the geometric mean is that rate
    assert crafter_summary([{"epoch": 1}], prefix) is None


def test_run_results_of_a_crafter_run(tmp_path):
    history = [_crafter_row("collection/train/", 2, 50.0), _crafter_row("collection/train/", 2, 0.0)]
    final = {**history[-1], **_crafter_row("collection/test/", 4, 10.0)}
    record = run_results(CRAFTER, seed=3, epoch=5, test_returns=[1.0, 2.0, 6.0], history=history, final=final)
    assert (record["agent"], record["game"], record["family"], record["seed"], record["epoch"]) \
        == ("torchrl_deltairis", "crafter", "crafter", 3, 5)
    assert record["score"] == pytest.approx(3.0) and record["human_normalized_score"] is None
    assert record["crafter"]["train"]["success_rates"]["place_table"] == pytest.approx(25.0)
    assert record["crafter"]["test"]["episodes"] == 4
    assert record["crafter"]["test"]["score"] == pytest.approx(10.0)
    path = write_results(tmp_path, record)
    assert json.loads(path.read_text()) == record and not list(tmp_path.glob("*.tmp"))


def test_run_results_of_an_atari_run_has_the_human_normalised_score():
    record = run_results({"id": "PongNoFrameskip-v4", "family": "atari"}, seed=0, epoch=600,
                         test_returns=[14.6, 14.6], history=[], final={})
    assert record["human_normalized_score"] == pytest.approx(1.0) and "crafter" not in record
    assert math.isclose(record["score"], 14.6)
    with pytest.raises(ValueError, match="no test episode"):
        run_results({"id": "Pong", "family": "atari"}, seed=0, epoch=1, test_returns=[], history=[], final={})


def test_resume_choices(tmp_path):
    assert should_resume(False, tmp_path) is False
    assert should_resume(True, tmp_path) is True  # and loading then names the missing checkpoint
    assert should_resume("auto", tmp_path) is False
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "state.pt").write_bytes(b"")
    assert should_resume("auto", tmp_path) is True
    with pytest.raises(ValueError, match=r"params.common.resume='yes'; expected one of \[False, True, 'auto'\]"):
        parse(CommonConfig, {"epochs": 1, "resume": "yes"}, "params.common")
