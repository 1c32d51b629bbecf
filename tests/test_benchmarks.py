"""benchmarks/atari100k.py, crafter_benchmark.py and speed.py: sweeps through Hydra (a fake train.py for the
resume and skip logic, the real one for the smoke benchmark), the Crafter report, speed --compare."""

import csv
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY
from hydra import compose, initialize_config_dir

from benchmarks import atari100k, roofline, runtime, speed, speed_configs, speed_imagination
from benchmarks import sweep as sweep_lib
from benchmarks import crafter_benchmark as crafter
from benchmarks.timing import stopwatch
from torchrl_deltairis.reference import DeltaIrisModels
from torchrl_deltairis.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"

FAKE_TRAIN = '''
"""Stands in for train.py: logs its call, writes a checkpoint, crashes once if told, else results.json."""
import json, os
from pathlib import Path
import hydra

@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg):
    run, game, seed = Path.cwd(), cfg.env.train.id, cfg.params.common.seed
    with open(os.environ["FAKE_TRAIN_LOG"], "a") as log:
        log.write(f"{game} {seed} {cfg.params.common.resume} {cfg.params.name} {run}\\n")
    (run / "checkpoints").mkdir(exist_ok=True)
    (run / "checkpoints" / "state.pt").write_text("")
    if os.environ.get("FAKE_TRAIN_CRASH") == f"{game}/{seed}" and not (run / "crashed").exists():
        (run / "crashed").write_text("")
        raise RuntimeError("crash")
    record = {"agent": "torchrl_deltairis", "game": game, "family": cfg.env.train.family, "seed": seed,
              "epoch": 2, "score": 10.0 * seed + len(game), "returns": [1.0]}
    if game == "crafter":
        rates = {f"a{i}": float(i * (seed + 1)) for i in range(22)}
        split = {"episodes": 4, "score": float(seed), "success_rates": rates}
        record["crafter"] = {"train": split, "test": split}
    (run / "results.json").write_text(json.dumps(record))

main()
'''
FAKE_CONFIGS = {
    "config.yaml": "defaults:\n  - env: atari\n  - params: atari\n  - _self_\nwandb: {mode: offline}\n"
                   "hydra:\n  job:\n    chdir: true\n",
    "env/atari.yaml": "train: {id: BreakoutNoFrameskip-v4, family: atari}\ntest: {max_episode_steps: 1}\n",
    "env/crafter.yaml": "train: {id: crafter, family: crafter}\ntest: {max_episode_steps: 1}\n",
    "params/atari.yaml": "name: atari\ncommon: {seed: 0, resume: false, epochs: 600}\nevaluation: {every: 25}\n",
    "params/crafter.yaml": "name: crafter\ncommon: {seed: 0, resume: false, epochs: 1000}\nevaluation: {every: 50}\n",
    "params/smoke.yaml": "name: smoke\ncommon: {seed: 0, resume: false, epochs: 3}\nevaluation: {every: 2}\n",
}


@pytest.fixture
def fake_train(tmp_path, monkeypatch):
    """A Hydra app with train.py's config shape; returns the path of its call log."""
    app = tmp_path / "app"
    for name, text in FAKE_CONFIGS.items():
        (app / "conf" / name).parent.mkdir(parents=True, exist_ok=True)
        (app / "conf" / name).write_text(text)
    (app / "train.py").write_text(textwrap.dedent(FAKE_TRAIN))
    monkeypatch.setattr(sweep_lib, "TRAIN_SCRIPT", app / "train.py")  # both sweeps' (benchmarks/sweep.py)
    log = tmp_path / "calls.log"
    monkeypatch.setenv("FAKE_TRAIN_LOG", str(log))
    return log


def _calls(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def test_sweep_resumes_the_crashed_run_and_skips_finished_ones(tmp_path, fake_train, monkeypatch, capsys):
    sweep_dir = tmp_path / "sweep"
    monkeypatch.setenv("FAKE_TRAIN_CRASH", "PongNoFrameskip-v4/0")  # the first job
    argv = ["--games", "Pong", "breakout", "--seeds", "2", "--sweep-dir", str(sweep_dir), "--no-aggregate"]
    assert atari100k.main(argv) == 1  # one run crashed: not finished
    calls = _calls(fake_train)
    assert sorted((c[0], c[1]) for c in calls) == [("BreakoutNoFrameskip-v4", "0"), ("BreakoutNoFrameskip-v4", "1"),
                                                   ("PongNoFrameskip-v4", "0"), ("PongNoFrameskip-v4", "1")]
    assert {c[2] for c in calls} == {"auto"} and {c[3] for c in calls} == {"atari"}
    for game, seed, *_, folder in calls:  # hydra.sweep.subdir=${env.train.id}/seed${params.common.seed}
        assert Path(folder) == sweep_dir / game / f"seed{seed}"
    out = capsys.readouterr()
    assert "1 runs unfinished" in out.err and "3 finished, 1 started, 0 new" in out.out
    assert atari100k.main(argv) == 0  # only the crashed run is launched again, and finishes
    assert [c[:2] for c in _calls(fake_train)[len(calls):]] == [["PongNoFrameskip-v4", "0"]]
    assert atari100k.main(argv) == 0  # all finished: nothing launched
    assert len(_calls(fake_train)) == 5
    assert "4 finished, 0 started, 0 new" in capsys.readouterr().out


def test_joblib_launcher_and_aggregation(tmp_path, fake_train, capsys):
    sweep_dir = tmp_path / "sweep"
    argv = ["--smoke", "--launcher", "joblib", "--jobs", "2", "--sweep-dir", str(sweep_dir), "--reps", "100"]
    assert atari100k.main(argv) == 0
    assert {c[3] for c in _calls(fake_train)} == {"smoke"} and len(_calls(fake_train)) == 2
    results = json.loads((sweep_dir / "aggregate" / "aggregates.json").read_text())
    assert results["settings"]["games"] == ["Pong", "Breakout"]
    assert results["per_game"]["torchrl_deltairis"]["Pong"]["mean_score"] == len("PongNoFrameskip-v4")
    assert list(results["aggregates"]) == ["torchrl_deltairis", "DeltaIRIS", "IRIS", "DIAMOND"]
    out = capsys.readouterr().out
    assert "hydra/launcher=joblib hydra.launcher.n_jobs=2" in out and "P(agent > DeltaIRIS)" in out


def test_blocks_group_games_by_unfinished_seeds(tmp_path):
    sweep = sweep_lib.Sweep(tmp_path, "atari", "atari", ["A", "B", "C"], [0, 1, 2])
    for game, seed in [("A", 0), ("B", 0), ("C", 0), ("C", 1), ("C", 2)]:
        sweep.folder(game, seed).mkdir(parents=True)
        (sweep.folder(game, seed) / "results.json").write_text(json.dumps({"game": game, "seed": seed, "score": 1}))
    assert sweep.blocks() == [(["A", "B"], [1, 2])]
    cmd = sweep.command(["A", "B"], [1, 2])
    assert cmd[2:] == ["-m", "env=atari", "params=atari", "env.train.id=A,B", "params.common.seed=1,2",
                       "params.common.resume=auto", f"hydra.sweep.dir={tmp_path}",
                       "hydra.sweep.subdir=${env.train.id}/seed${params.common.seed}"]
    (sweep.folder("A", 0) / "results.json").write_text(json.dumps({"game": "B", "seed": 0, "score": 1}))
    with pytest.raises(sweep_lib.SweepError, match="holds game 'B' seed 0, expected 'A' seed 0"):
        sweep.results()


def test_usage_errors(tmp_path, capsys):
    assert atari100k.main(["--games", "Tetris", "--dry-run"]) == 2
    assert "unknown Atari 100k game 'Tetris'" in capsys.readouterr().err
    assert atari100k.main(["--jobs", "4", "--dry-run"]) == 2
    assert "--jobs 4 needs --launcher joblib" in capsys.readouterr().err
    assert atari100k.main(["--dry-run", "--sweep-dir", str(tmp_path), "params.common.device"]) == 2
    assert "expected Hydra overrides KEY=VALUE" in capsys.readouterr().err


def test_dry_run_prints_the_slurm_multirun(tmp_path, capsys):
    argv = ["--dry-run", "--sweep-dir", str(tmp_path), "--launcher", "slurm_gpu", "hydra.launcher.partition=gpu"]
    assert atari100k.main(argv) == 1
    out = capsys.readouterr().out
    assert "0 finished, 0 started, 130 new (of 130 runs)" in out
    assert "params.common.seed=0,1,2,3,4" in out and "env.train.id=AlienNoFrameskip-v4,Amidar" in out
    assert "hydra/launcher=slurm_gpu hydra.launcher.partition=gpu" in out
    assert not any(tmp_path.iterdir())


def test_crafter_sweep_report_table_and_chart(tmp_path, fake_train, capsys):
    sweep_dir = tmp_path / "sweep"
    assert crafter.main(["--seeds", "2", "--sweep-dir", str(sweep_dir)]) == 0
    assert [c[:3] for c in _calls(fake_train)] == [["crafter", "0", "auto"], ["crafter", "1", "auto"]]
    out = capsys.readouterr().out
    for split in ("train", "test"):
        assert re.search(rf"{split} episodes +seed 0 +seed 1 +mean ± std", out), out
    assert "31.50 ± 10.50" in out  # a21: 21 × (seed + 1) for seeds 0, 1
    report = sweep_dir / "report"
    summary = json.loads((report / "crafter.json").read_text())
    assert summary["splits"]["train"]["overall"]["score"] == {"mean": 0.5, "std": 0.5, "min": 0.0, "max": 1.0}
    assert (report / "crafter_success_rates.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (report / "crafter_test.csv").read_text().splitlines()
    assert rows[0] == "metric,seed0,seed1,mean,std,min,max" and len(rows) == 1 + 22 + 1


def test_crafter_report_of_a_run_without_finished_training_episodes(tmp_path):
    split = {"episodes": 2, "score": 1.0, "success_rates": {"wake_up": 50.0, "eat_cow": 0.0}}
    results = [{"seed": 0, "game": "crafter", "crafter": {"train": None, "test": split}}]
    summary = crafter.report(results, tmp_path)
    assert summary["splits"]["train"]["episodes"] == 0 and summary["splits"]["test"]["episodes"] == 2
    assert "–" in crafter.format_table(summary, "train")
    with pytest.raises(sweep_lib.SweepError, match="has no 'crafter' entry"):
        crafter.summarise([{"seed": 0, "game": "Pong"}])


def _rows(seconds: float, rate: float) -> list[dict]:
    return [{"device": "cpu", "variant": "atari", "step": "tokenizer", "precision": "bf16",
             "memory_format": "contiguous", "seconds_median": seconds},
            {"device": "cuda:0", "variant": "atari", "step": "imagination", "precision": "fp32", "batch": 64,
             "steps_per_s_rollout": rate}]


def test_speed_compare_two_saved_files(tmp_path):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps({"results": _rows(2.0, 100.0)}))
    new.write_text(json.dumps({"results": _rows(1.0, 150.0)[::-1] + [{**_rows(1, 1)[0], "precision": "fp32"}]}))
    proc = subprocess.run([sys.executable, str(BENCH / "speed.py"), "--load", str(new), "--compare", str(old)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "| cpu | atari | tokenizer | bf16 | contiguous | - | 2.000 s | 1.000 s | 0.500 | 2.00× |" in proc.stdout
    assert "| cuda | atari | imagination | fp32 | - | 64 | 100.000 steps/s | 150.000 steps/s | 1.500 | 1.50× |" \
        in proc.stdout
    assert "(2 rows compared; 1 only in the new run, 0 only in the old one)" in proc.stdout
    (tmp_path / "bad.json").write_text("{}")
    proc = subprocess.run([sys.executable, str(BENCH / "speed.py"), "--load", str(new), "--compare",
                           str(tmp_path / "bad.json")], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "expected a speed.py --json file" in proc.stderr


# The scripts' --tiny work on one thread: tiny models gain nothing from a second one, and on a busy
# machine OpenMP's spinning threads make their small kernels several times slower.
@pytest.mark.slow
def test_speed_tiny_measures_writes_json_and_compares(tmp_path):
    out = tmp_path / "speed.json"
    cmd = [sys.executable, str(BENCH / "speed.py"), "--tiny", "--device", "cpu", "--variants", "atari",
           "--steps", "world_model", "imagination", "--precisions", "fp32", "bf16", "--memory-formats",
           "contiguous", "--warmup", "0", "--repeats", "1", "--batches", "1", "--threads", "1", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())["results"]
    assert {(r["step"], r["precision"]) for r in rows} == {(s, p) for s in ("world_model", "imagination")
                                                           for p in ("fp32", "bf16")}
    assert all(r["tiny"] and r["device"] == "cpu" for r in rows)
    assert "4 rows compared" in speed.compare(rows, rows)
    for r in rows:  # each row's work against this machine's matmul rate in its precision
        assert r["gflop"] > 0 and r["peak_gflop_per_s"] > 0
        assert r["gflop_per_s"] == pytest.approx(r["gflop"] / (r["seconds_median"] if "seconds_median" in r
                                                               else 1 / r["steps_per_s_rollout"]))
    assert "GFLOP/s = " in proc.stdout and "matmul peak: fp32 " in proc.stdout
    for r in rows:  # launches and host syncs per step, counted in a pass of their own
        assert r["ops_per_step"] > 0 and r["syncs_per_step"] == (0 if r["step"] == "imagination" else 1)
    assert "| ATen ops / step | host syncs / step |" in proc.stdout


def test_dispatch_count_sees_host_syncs_but_not_host_tensors():
    x, host = torch.arange(6.0), torch.zeros(())

    def work():
        x.sum().item(), bool(x[0]), x.tolist(), torch.nonzero(x), host.item()
        torch.tensor([1, 2], device=x.device)  # from host data: a blocking copy on a GPU
        torch.nn.functional.one_hot(torch.arange(3), 3)  # its range checks read the data on a CPU only
    counted = roofline.count_dispatch(work, host_tensors=[host])
    assert counted.syncs == {"_local_scalar_dense": 2, "Tensor.tolist": 1, "nonzero": 1,
                             "torch.tensor(host data, device)": 1}
    assert counted.num_syncs == 5 and counted.ops > 10
    row = roofline.annotate_dispatch({}, counted, per=5)
    assert roofline.describe_dispatch(row) == f"{counted.ops / 5:g} ops, 1 sync"


def test_imagination_syncs_no_host_per_step_and_an_update_once(monkeypatch):
    """What bounds a GPU at Δ-IRIS's batch sizes, counted on the CPU: an imagined step through
    ``env.rollout`` (ends and partial resets included) makes no host sync and the same launches at any
    batch; a tokenizer or world-model update makes one (apply_gradients' finite check)."""
    configs, cpu = speed_configs.configs_for("atari", tiny=True), torch.device("cpu")
    for step in ("tokenizer", "world_model"):
        runner = speed.TrainingStep(configs, "atari", step, "contiguous", cpu, tiny=True)
        runner.timed(bf16=False)  # warm-up: the optimizer's state
        counted = runner.dispatched(bf16=False)
        assert counted.ops > 0 and counted.syncs == {"_local_scalar_dense": 1}, (step, counted.syncs)
    torch.manual_seed(0)
    models = DeltaIrisModels(configs)
    steps = {}
    for batch in (1, 5):
        run = speed_imagination.ImaginationRun(models, "atari", batch, cpu)
        run.timed("rollout", bf16=False)
        _, steps[batch] = run.dispatched(bf16=False)
        assert steps[batch].num_syncs == 0, steps[batch].syncs
    assert steps[1].ops == steps[5].ops
    # the actor-critic update: imagination adds no sync per step; what it makes is apply_gradients' one and
    # the five of TorchRL's vectorised TD(λ) (vec_td_lambda_return_estimate: trajectories split at the ends)
    counts = []
    for horizon in (2, 4):
        monkeypatch.setitem(speed_imagination.HORIZON, "atari", horizon)
        step = speed_imagination.ActorCriticStep(models, "atari", cpu)
        step.timed(bf16=False)
        counts.append(step.dispatched(bf16=False))
    assert counts[0].syncs == counts[1].syncs and counts[0].num_syncs <= 6, counts[0].syncs


def test_flop_count_of_a_matmul_and_its_backward():
    x = torch.randn(8, 16, requires_grad=True)
    w = torch.randn(16, 4, requires_grad=True)
    assert roofline.count_flops(lambda: (x @ w).sum().backward()) == 3 * 2 * 8 * 16 * 4  # forward + 2 grads
    row = roofline.annotate({}, flops=2e9, seconds=0.5, peak=8.0)
    assert (row["gflop_per_s"], row["share_of_peak"]) == (4.0, 0.5)
    assert roofline.describe(row) == "2.00 GFLOP, 4 GFLOP/s = 50 % of 8"


def _preset(overrides):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("config", overrides=overrides)


def test_runtime_projects_the_schedule_of_a_preset():
    """The projection follows the preset's schedule: epoch 1's budgets, start_after_epochs, the stop of
    collection, evaluation every N epochs and at the last."""
    cfg = _preset(["env=atari", "params=atari"])
    costs = runtime.Costs(collection_step=0.01, updates={"tokenizer": 1.0, "world_model": 2.0, "actor_critic": 3.0},
                          test_episode_steps=500)
    rows = runtime.project(RunConfig.from_hydra(cfg), costs)
    p = cfg.params
    assert len(rows) == p.common.epochs == 600
    assert rows[0]["collection"] == pytest.approx(p.collection.train.config.num_steps_first_epoch * 0.01)
    assert rows[1]["collection"] == pytest.approx(p.collection.train.config.num_steps * 0.01)
    for name, cost in costs.updates.items():  # Atari: the components start after epochs 5, 50 and 75
        start = p.training[name].start_after_epochs
        assert start >= 5 and rows[start - 1][name] == 0
        assert rows[start][name] == p.training[name].steps_per_epoch * cost
    assert rows[p.collection.train.stop_after_epochs]["collection"] == 0  # the epoch after the last collection
    evaluated = [i + 1 for i, r in enumerate(rows) if r["evaluation"]]
    assert evaluated == [*range(p.evaluation.every, 601, p.evaluation.every)] + ([600] if 600 % p.evaluation.every else [])
    test_steps = p.collection.test.config.num_episodes * 500
    assert rows[evaluated[0] - 1]["evaluation"] == pytest.approx(
        test_steps * 0.01 * p.collection.train.num_envs / p.collection.test.num_envs)
    assert runtime.steady_epoch(RunConfig.from_hydra(cfg)) == 76  # the actor-critic starts after epoch 75
    text = runtime.table(rows, runtime.steady_epoch(RunConfig.from_hydra(cfg)))
    assert "| first epoch |" in text and "| steady epoch (76) |" in text and "| whole run (600 epochs) |" in text
    assert runtime.run_name(RunConfig.from_hydra(cfg)) == "Atari 100k Breakout"


SMOKE_BUDGETS = TINY[1:]  # conftest's smallest params=smoke budgets that still cross every epoch boundary


@pytest.mark.slow
def test_runtime_measures_a_preset_and_prints_its_run_time():
    """One env of each kind, in this process: no env worker processes to start (runtime.py times no test
    episode; their number only scales the projected evaluation)."""
    proc = subprocess.run([sys.executable, str(BENCH / "runtime.py"), "params=smoke", *SMOKE_BUDGETS,
                           "params.collection.train.num_envs=1", "params.collection.test.num_envs=1",
                           "--warmup", "0", "--repeats", "1"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"per update: tokenizer [\d.]+ s, world_model [\d.]+ s, actor_critic [\d.]+ s", proc.stdout)
    assert re.search(r"^Crafter on this machine: ~[\d.]+ (s|min|h)", proc.stdout, re.M), proc.stdout


@pytest.mark.slow
def test_atari100k_smoke_end_to_end(tmp_path):
    """2 games × 1 seed of the real train.py with params=smoke (at SMOKE_BUDGETS, 2 train env workers, test
    episodes of 20 agent steps played one after the other), side by side through the joblib launcher,
    aggregated; the second call launches nothing."""
    sweep_dir = tmp_path / "sweep"
    cmd = [sys.executable, str(BENCH / "atari100k.py"), "--smoke", "--sweep-dir", str(sweep_dir), "--reps", "200",
           "--launcher", "joblib", "--jobs", "2", *SMOKE_BUDGETS,  # side by side: 2 cores
           "env.test.max_episode_steps=80", "params.collection.test.num_envs=1"]
    env = {**os.environ, "WANDB_SILENT": "true"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    for game in ("PongNoFrameskip-v4", "BreakoutNoFrameskip-v4"):
        result = json.loads((sweep_dir / game / "seed0" / "results.json").read_text())
        assert result["game"] == game and result["seed"] == 0 and result["family"] == "atari"
        with open(sweep_dir / game / "seed0" / "metrics.csv", newline="") as file:
            last = list(csv.DictReader(file))[-1]  # the Atari smoke preset trains the scalar Atari heads
        assert float(last["collection/test/human_normalized_score"]) == pytest.approx(
            result["human_normalized_score"]) and "world_model/loss_rewards" in last
    results = json.loads((sweep_dir / "aggregate" / "aggregates.json").read_text())
    assert results["per_game"]["torchrl_deltairis"]["Pong"]["runs"] == 1
    again = subprocess.run(cmd + ["--no-aggregate", "--report"], capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0 and "2 finished" in again.stdout and "[multirun" not in again.stdout
    # the report: the runs' curves from their metrics.csv, against a random policy on the same test protocol
    table = json.loads((sweep_dir / "report" / "table.json").read_text())
    assert [(r["game"], r["seed"]) for r in table["runs"]] == [("PongNoFrameskip-v4", 0), ("BreakoutNoFrameskip-v4", 0)]
    assert all(r["curve"] and r["beats_random"] in (True, False) for r in table["runs"])
    # the smoke preset's 2 test episodes, for seeds 0-2 (a spread needs a few seeds)
    assert all(len(b["returns"]["0"]) == 2 and len(b["returns"]) == 3 for b in table["random"].values())
    assert (sweep_dir / "report" / "curves.png").exists()


def test_interleaved_refuses_a_folder_that_is_not_the_references_src_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "interleaved.py"), "--reference", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [f"error: --reference {tmp_path} is not the reference's src/ folder "
                                                "(no models/world_model.py)"]


@pytest.mark.parametrize("step", ["tokenizer", "imagination"])
def test_profile_step_prints_the_operators_of_one_step(step):
    cmd = [sys.executable, str(BENCH / "profile_step.py"), step, "--tiny", "--variant", "atari", "--batch", "2",
           "--precision", "bf16", "--rows", "5", "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Self CPU time total" in proc.stdout and "aten::" in proc.stdout


def test_the_stopwatch_times_its_block_and_keeps_the_reading():
    with stopwatch("cpu") as elapsed:
        time.sleep(0.02)
        inside = elapsed()
    assert 0.02 <= inside <= elapsed()
    assert elapsed() == elapsed()  # frozen once the block is over


@pytest.mark.parametrize("script,args,said", [
    ("collect.py", ["--steps", "40", "--crafter-envs", "2", "--atari-envs", "1", "--steps-per-batch", "5"], "collector"),
    ("sample.py", ["--steps", "400", "--batch", "4", "--length", "5"], "reopen: "),
    ("group_norm.py", ["--dtypes", "fp32", "--repeats", "1", "--threads", "1"], "NHWC"),
])
def test_the_data_path_and_kernel_benchmarks_run(script, args, said):
    """Each runs as a file, at tiny sizes, and prints its table (no figure is asserted)."""
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert said in proc.stdout, proc.stdout[-3000:]
