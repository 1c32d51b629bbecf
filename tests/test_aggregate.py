"""benchmarks/aggregate.py: the published Atari 100k aggregates, CIs, improvement odds, errors, run files."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import aggregate as agg

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "aggregate.py"
REFS = ROOT / "benchmarks" / "reference_results"
FAST = ["--reps", "200", "--profile-reps", "50", "--seed", "0", "--no-plots"]


PUBLISHED = {  # mean, median, IQM, optimality gap (mean/median over game means, IQM/gap over all runs)
    "DeltaIRIS": (1.383, 0.594, 0.682, 0.443),
    "IRIS": (1.046, 0.289, 0.501, 0.512),
    "DIAMOND": (1.459, 0.373, 0.641, 0.480),
}


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("agg")
    return agg.run(agg.parse_args([*FAST, "--out", str(out)]))


def _table(name: str) -> dict:
    return json.loads((REFS / f"{name}.json").read_text())


def _errors(argv: list[str], capsys) -> str:
    assert agg.main(argv) == 2
    return capsys.readouterr().err


def test_reproduces_published_point_estimates(shipped):
    assert list(shipped["aggregates"]) == list(PUBLISHED)
    for agent, expected in PUBLISHED.items():
        got = [shipped["aggregates"][agent][m]["value"] for m in agg.METRICS]
        assert np.round(got, 3).tolist() == list(expected), agent
    assert shipped["per_game"]["DeltaIRIS"]["Breakout"]["mean_score"] == pytest.approx(226.0)
    assert shipped["per_game"]["DeltaIRIS"]["Kangaroo"]["human_normalised"] == pytest.approx(0.510, abs=5e-4)


def test_intervals_contain_point_and_are_ordered(shipped):
    cells = [c for a in shipped["aggregates"].values() for c in a.values()]
    cells += list(shipped["probability_of_improvement"].values())
    for c in cells:
        assert c["ci_low"] < c["ci_high"]
        assert c["ci_low"] <= c["value"] <= c["ci_high"]
    iqm = shipped["aggregates"]["DeltaIRIS"]["iqm"]
    assert 0.62 < iqm["ci_low"] < 0.66 and 0.70 < iqm["ci_high"] < 0.75  # published 0.638–0.727


def test_probability_of_improvement(shipped):
    poi = shipped["probability_of_improvement"]
    assert poi["DeltaIRIS"]["baseline"] == "DeltaIRIS" and poi["DeltaIRIS"]["value"] == 0.5
    assert poi["IRIS"]["value"] < 0.5 < poi["DIAMOND"]["value"]
    from rliable import metrics
    human, random = _table("HUMAN"), _table("RANDOM")
    hns = {a: agg.normalise(_table(a), list(human), human, random) for a in PUBLISHED}
    for x in hns.values():
        assert agg.probability_of_improvement(x, x) == 0.5
        for y in hns.values():  # same as rliable's Mann-Whitney loop, ties included
            expected = metrics.probability_of_improvement(x, y)
            assert agg.probability_of_improvement(x, y) == pytest.approx(expected)
    uneven = hns["IRIS"][:3]  # different run counts per agent are allowed
    assert agg.probability_of_improvement(hns["DIAMOND"], uneven) == pytest.approx(
        metrics.probability_of_improvement(hns["DIAMOND"], uneven))


def test_bootstrap_is_seeded_per_agent(tmp_path):
    one = agg.run(agg.parse_args([*FAST, "--out", str(tmp_path / "a"), str(REFS / "IRIS.json")]))
    two = agg.run(agg.parse_args([*FAST, "--out", str(tmp_path / "b"), str(REFS / "DIAMOND.json"),
                                  str(REFS / "IRIS.json")]))
    assert one["aggregates"]["IRIS"] == two["aggregates"]["IRIS"]


def test_command_writes_table_json_csv_png(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, str(SCRIPT), "--reps", "200", "--profile-reps", "50", "--baseline", "IRIS",
           "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "P(agent > IRIS)" in proc.stdout and "1.383 [" in proc.stdout and "DIAMOND" in proc.stdout
    for png in ("aggregate_intervals.png", "performance_profile.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "aggregates.json").read_text())
    assert results["settings"]["baseline"] == "IRIS" and len(results["settings"]["games"]) == 26
    assert len(results["performance_profile"]["tau"]) == len(results["performance_profile"]["IRIS"]["value"])
    rows = (out / "aggregates.csv").read_text().splitlines()
    assert rows[0] == "agent,metric,value,ci_low,ci_high" and len(rows) == 1 + 3 * 5
    assert len((out / "per_game.csv").read_text().splitlines()) == 1 + 3 * 26


def test_errors_list_missing_unknown_and_empty_games(tmp_path, capsys):
    table = _table("IRIS")
    del table["Pong"], table["Qbert"]
    table["Tetris"] = [1.0]
    table["Boxing"] = []
    (tmp_path / "bad.json").write_text(json.dumps(table))
    err = _errors([*FAST, "--out", str(tmp_path), str(tmp_path / "bad.json")], capsys)
    assert "bad: missing games ['Pong', 'Qbert']" in err
    assert "bad: unknown games ['Tetris']" in err
    assert "bad: games with no runs ['Boxing']" in err


def test_errors_unknown_baseline_and_bad_inputs(tmp_path, capsys):
    err = _errors([*FAST, "--out", str(tmp_path), "--baseline", "Dreamer"], capsys)
    assert "unknown baseline 'Dreamer'; agents: ['DeltaIRIS', 'IRIS', 'DIAMOND']" in err
    assert "no such file" in _errors([*FAST, "--out", str(tmp_path), str(tmp_path / "nope.json")], capsys)
    table = _table("IRIS")
    table["Pong"] = table["Pong"][:3]
    (tmp_path / "uneven.json").write_text(json.dumps(table))
    err = _errors([*FAST, "--out", str(tmp_path), str(tmp_path / "uneven.json")], capsys)
    assert "uneven: uneven runs per game [3, 5]" in err
    table["Pong"] = [1, "n/a", 3, 4, 5]
    (tmp_path / "text.json").write_text(json.dumps(table))
    err = _errors([*FAST, "--out", str(tmp_path), str(tmp_path / "text.json")], capsys)
    assert "text: non-numeric scores in games ['Pong']" in err
    (tmp_path / "broken.json").write_text("{")
    err = _errors([*FAST, "--out", str(tmp_path), str(tmp_path / "broken.json")], capsys)
    assert "broken.json: not valid JSON" in err
    assert "given twice" in _errors([*FAST, "--out", str(tmp_path), str(REFS / "IRIS.json"),
                                     str(REFS / "IRIS.json")], capsys)


def _write_runs(folder: Path, agent: str, scores: dict[str, list[float]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, (game, runs) in enumerate(scores.items()):
        for seed, score in reversed(list(enumerate(runs))):  # written out of order
            record = {"agent": agent, "game": game, "seed": seed, "score": score, "env_steps": 100_000}
            (folder / f"game{i}_seed{seed}.json").write_text(json.dumps(record))


def test_run_files_are_merged_into_agent_tables(tmp_path, capsys):
    runs = tmp_path / "runs"
    _write_runs(runs / "a", "ours", {"PongNoFrameskip-v4": [3.0, -5.0], "ALE/Breakout-v5": [10.0, 20.0]})
    (runs / "b").mkdir()
    other = [{"agent": "other", "game": g, "seed": s, "score": 1.0} for g in ("Pong", "Breakout")
             for s in range(3)]
    (runs / "b" / "more.json").write_text(json.dumps(other))  # a list of records in one file
    tables = agg.read_inputs([str(runs)])
    assert tables["ours"] == {"Breakout": [10.0, 20.0], "Pong": [3.0, -5.0]}
    assert tables["other"]["Pong"] == [1.0, 1.0, 1.0]
    assert list(agg.read_inputs([f"mine={runs / 'a'}"])) == ["mine"]
    results = agg.run(agg.parse_args([*FAST, "--out", str(tmp_path / "o"), "--games", "Pong", "Breakout",
                                      "--baseline", "other", str(runs)]))
    pong = (-1.0 - -20.7) / (14.6 - -20.7)
    assert results["per_game"]["ours"]["Pong"]["human_normalised"] == pytest.approx(pong)
    assert results["settings"]["games"] == ["Pong", "Breakout"]
    assert "missing games" in _errors([*FAST, "--out", str(tmp_path / "o"), str(runs)], capsys)
    again = {"agent": "ours", "game": "Pong", "seed": 1, "score": 0}
    (runs / "a" / "again.json").write_text(json.dumps(again))
    assert "run counted twice: agent ours, game Pong, seed 1" in _errors(
        [*FAST, "--out", str(tmp_path / "o"), str(runs)], capsys)


def test_run_folders_give_their_results_json_and_nothing_else(tmp_path, capsys):
    """A sweep of train.py run folders: results.json are records; wandb/dataset JSON, unfinished and
    Crafter runs are left out; unrelated JSON outside run folders is skipped with a note."""
    sweep = tmp_path / "sweep"
    for game, seed, score in [("PongNoFrameskip-v4", 0, -20.0), ("PongNoFrameskip-v4", 1, -19.0),
                              ("BreakoutNoFrameskip-v4", 0, 5.0), ("BreakoutNoFrameskip-v4", 1, 7.0)]:
        run = sweep / game / f"seed{seed}"
        (run / "dataset" / "train").mkdir(parents=True)
        (run / "wandb" / "files").mkdir(parents=True)
        record = {"agent": "torchrl_deltairis", "game": game, "family": "atari", "seed": seed, "epoch": 600,
                  "score": score, "returns": [score], "human_normalized_score": 0.1}
        (run / "results.json").write_text(json.dumps(record))
        (run / "dataset" / "train" / "commit.json").write_text(json.dumps({"num_rows": 10}))
        (run / "wandb" / "files" / "wandb-summary.json").write_text("{}")
        (run / "wandb" / "files" / "table.json").write_text(json.dumps({"Pong": [1.0]}))  # looks like a table
        (run / "wandb" / "partial.json").write_text("{")
    unfinished = sweep / "PongNoFrameskip-v4" / "seed2"
    (unfinished / ".hydra").mkdir(parents=True)
    (unfinished / "other.json").write_text(json.dumps({"agent": "x", "game": "Pong", "seed": 2, "score": 1}))
    crafter = sweep / "crafter" / "seed0"
    crafter.mkdir(parents=True)
    (crafter / "results.json").write_text(json.dumps({"agent": "torchrl_deltairis", "game": "crafter",
                                                      "family": "crafter", "seed": 0, "score": 3.0}))
    (sweep / "aggregate").mkdir()
    (sweep / "aggregate" / "aggregates.json").write_text(json.dumps({"settings": {}}))
    assert agg.read_inputs([f"ours={sweep}"]) == {"ours": {"Breakout": [5.0, 7.0], "Pong": [-20.0, -19.0]}}
    assert "skipped 1 JSON files that are neither agent tables nor run records: aggregates.json" in \
        capsys.readouterr().err
    (sweep / "BreakoutNoFrameskip-v4" / "seed0" / "results.json").write_text(json.dumps({"score": 1}))
    assert "results.json: neither a run record" in _errors([*FAST, "--out", str(tmp_path / "o"), str(sweep)], capsys)
