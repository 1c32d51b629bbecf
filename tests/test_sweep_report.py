"""benchmarks/sweep_report.py and ``atari100k.py --report``: the random baseline through the test
protocol, the learning curves read from metrics.csv, and the beats-random verdict."""

import csv
import json
import statistics
from pathlib import Path

import pytest

from benchmarks import atari100k
from benchmarks import sweep_report as report_lib

ROOT = Path(__file__).resolve().parents[1]

PONG = "PongNoFrameskip-v4"


def test_random_returns_follow_the_test_env_and_the_seed():
    env = {"id": "Pong", "max_episode_steps": 600, "noop_max": 1, "done_on_life_loss": False}
    first = report_lib.random_returns(env, 2, seed=3)
    assert len(first) == 2 and all(-21 <= r <= 21 for r in first)
    assert report_lib.random_returns(env, 2, seed=3) == first  # the seed fixes actions and no-op starts


def test_spread_is_the_larger_of_the_episode_and_seed_score_deviations():
    b = report_lib.RandomBaseline(PONG, 2, {0: [0.0, 2.0], 1: [10.0, 12.0]})
    assert b.mean == 6.0
    assert b.seed_scores == [1.0, 11.0]
    per_episode, per_seed = statistics.pstdev([0, 2, 10, 12]), statistics.stdev([1.0, 11.0])
    assert b.spread == max(per_episode, per_seed) == per_seed
    assert b.bar == 6.0 + per_seed
    assert report_lib.RandomBaseline(PONG, 3, {0: [0.0, 4.0, 8.0]}).spread == statistics.pstdev([0, 4, 8])


def _write_metrics(folder: Path, rows: list[dict]) -> None:
    folder.mkdir(parents=True)
    with open(folder / "metrics.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["epoch", report_lib.STEPS, report_lib.TEST_SCORE])
        writer.writeheader()
        writer.writerows(rows)


def test_report_reads_curves_against_env_steps_and_judges_each_run(tmp_path):
    steps, score = report_lib.STEPS, report_lib.TEST_SCORE
    _write_metrics(tmp_path / "a", [{"epoch": 1, steps: 1000}, {"epoch": 2, steps: 500, score: -20.0},
                                    {"epoch": 3, steps: 500}, {"epoch": 4, steps: 500, score: -15.0}])
    _write_metrics(tmp_path / "b", [{"epoch": 1, steps: 1000}, {"epoch": 2, steps: 500, score: -20.5}])
    baseline = report_lib.RandomBaseline(PONG, 2, {0: [-21.0, -20.0], 1: [-21.0, -20.0]})  # mean -20.5, sd 0.5
    runs = [(PONG, 0, tmp_path / "a", -15.0), (PONG, 1, tmp_path / "b", -20.0), (PONG, 2, tmp_path / "c", None)]
    rows = report_lib.report(tmp_path, runs, {PONG: baseline})
    assert rows[0].curve == [(1500, -20.0), (2500, -15.0)]
    assert [r.beats_random for r in rows] == [True, False, None]  # -20.0 is not above -20.5 + 0.5
    table = (tmp_path / "report" / "table.md").read_text()
    assert "| Pong | 0 | -20.0 (1k), -15.0 (2k) | -15.0 | -20.5 ± 0.5 | yes |" in table
    assert "| Pong | 2 | - | - | -20.5 ± 0.5 | not finished |" in table
    assert (tmp_path / "report" / "curves.png").stat().st_size > 0
    saved = json.loads((tmp_path / "report" / "table.json").read_text())
    assert [r["beats_random"] for r in saved["runs"]] == [True, False, None]


def test_atari100k_report_runs_the_random_baseline_once_per_seed(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_returns(env_cfg, num_episodes, seed):
        calls.append((env_cfg["id"], env_cfg["noop_max"], env_cfg["done_on_life_loss"], num_episodes, seed))
        return [float(seed)] * num_episodes

    monkeypatch.setattr(report_lib, "random_returns", fake_returns)
    argv = ["--params", "atari_cpu", "--games", "Pong", "--seeds", "2", "--sweep-dir", str(tmp_path), "--status",
            "--report"]
    assert atari100k.main(argv) == 1  # nothing finished
    # the test protocol of the preset: env.test (one no-op at most, whole games), its number of test episodes
    # seeds 0-2 at least: a spread needs a few
    assert calls == [(PONG, 1, False, 16, 0), (PONG, 1, False, 16, 1), (PONG, 1, False, 16, 2)]
    assert "| Pong | 0 | - | - | 1.0 ± 1.0 | not finished |" in capsys.readouterr().out
    assert atari100k.main(argv) == 1
    assert len(calls) == 3  # cached in <sweep>/random/PongNoFrameskip-v4.json
    assert (tmp_path / "random" / f"{PONG}.json").exists() and (tmp_path / "report" / "curves.png").exists()


def test_atari100k_params_choose_the_preset_and_folder(tmp_path, capsys):
    assert atari100k.main(["--params", "atari_cpu", "--games", "Boxing", "--seeds", "1", "--dry-run",
                           "--sweep-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    # the preset's own env file (32x32 frames) goes with it; presets without one run env=atari
    assert "env=atari_cpu params=atari_cpu" in out and "env.train.id=BoxingNoFrameskip-v4" in out
    assert atari100k.main(["--params", "atari_cpu", "--smoke", "--dry-run", "--sweep-dir", str(tmp_path)]) == 1
    assert "env=atari params=smoke" in capsys.readouterr().out


def test_the_laptop_preset_and_its_env_agree_and_a_mismatch_is_refused():
    from hydra import compose, initialize_config_dir

    from torchrl_deltairis.build.checks import validate_config

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
        cfg = compose("config", overrides=["env=atari_cpu", "params=atari_cpu", "env.train.id=Boxing"])
        wrong = compose("config", overrides=["env=atari", "params=atari_cpu", "env.train.id=Boxing"])
    validate_config(cfg)
    assert cfg.env.test.size == cfg.env.train.size == cfg.params.tokenizer.image_size == 32
    assert cfg.env.test.noop_max == 1 and not cfg.env.test.done_on_life_loss  # the reference's test protocol
    with pytest.raises(ValueError, match="env.train.size=64 but params.tokenizer.image_size=32"):
        validate_config(wrong)


def test_the_action_probe_scores_every_action_of_the_game():
    env = {"id": "Pong", "size": 32, "max_episode_steps": 400, "noop_max": 1, "done_on_life_loss": False}
    scores = report_lib.probe_actions(env, episodes=1)
    assert list(scores) == ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]
    assert all(-21 <= s <= 21 for s in scores.values())
