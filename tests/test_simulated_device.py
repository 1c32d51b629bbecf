"""The GPU path of a run, on the CPU: ``params.common.device=cuda`` on the simulated device of
tests/sim_device.py (CPU data, ``cuda:0`` tensors, CUDA's rules on mixing devices).

Whole ``train.py`` runs (Crafter with a resume, Atari, the off-policy ``sac`` path) go in their own
processes with the device installed at start-up; the imagination env in a stock ``Collector``, the play
tool's agent-in-the-world-model mode and ``benchmarks/runtime.py`` run on it too. Before the trainer
counted a batch's episodes on the CPU, every such run crashed at epoch 2 (the tokenizer's first counted
update) with "Expected all tensors to be on the same device" from ``EpisodeCounts.increment``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import sim_device
from conftest import (ROOT, SHORT_EPISODES, TINY, finish, metrics_without_timings, small_models, start_train,
                      stderr_of)
from sim_device import SimTensor, simulated_cuda

from torchrl_deltairis import keys
from torchrl_deltairis.data import EpisodeCounts

CUDA = ("params.common.device=cuda",)


# ------------------------------------------------------------------ the harness behaves as CUDA
def test_the_simulated_device_keeps_cuda_rules():
    with simulated_cuda() as device:
        x = torch.arange(6.0).view(2, 3).to(device)
        assert isinstance(x, SimTensor) and x.device == torch.device("cuda", 0) and x.is_cuda
        assert torch.equal((x * 2 + torch.tensor(1.0)).cpu(), torch.arange(6.0).view(2, 3) * 2 + 1)  # 0-d: allowed
        with pytest.raises(RuntimeError, match="same device"):
            x + torch.ones(3)  # a CPU tensor of dim 1
        y = torch.zeros(2, 3)
        y.copy_(x)  # copies between devices are allowed
        assert type(y) is torch.Tensor and torch.equal(y, x.cpu())
        a = torch.zeros(3)
        b = a.to(device)
        b += 1
        assert a.sum() == 0  # a move between devices copies
        w = torch.ones(3, requires_grad=True)
        (w.to(device) * 2).sum().backward()  # gradients flow back to the CPU
        assert w.grad.tolist() == [2.0, 2.0, 2.0]
        x[0, 1:] = 7  # the value is made on the device side, with its data
        assert x.cpu()[0].tolist() == [0.0, 7.0, 7.0]
        net = torch.nn.Conv2d(3, 4, 3).to(device)
        out = net(torch.ones(2, 3, 5, 5, device=device).contiguous(memory_format=torch.channels_last))
        out.sum().backward()
        assert isinstance(net.weight.grad, SimTensor) and net.weight.grad.abs().sum().item() > 0
        assert torch.cuda.is_available() and torch.ones(1).pin_memory().is_pinned()
    assert not torch.cuda.is_available() or torch.version.cuda  # uninstalled on a CPU build


def test_counts_of_device_episode_ids_fail_as_on_a_gpu():
    """What crashed every GPU run at its first counted update: the harness sees it."""
    counts = EpisodeCounts()
    with simulated_cuda() as device:
        with pytest.raises(RuntimeError, match="same device"):
            counts.increment("tokenizer", torch.tensor([0, 2]).to(device))


# ------------------------------------------------------------------ whole runs, in their own processes
def start_sim_train(run: Path, *overrides: str, kill_after_epoch: int | None = None):
    report = run.parent / f"{run.name}.sim.json"
    env = {**sim_device.sim_env(), "DELTAIRIS_SIM_REPORT": str(report)}
    if kill_after_epoch is not None:
        env["DELTAIRIS_SIM_KILL_AFTER_EPOCH"] = str(kill_after_epoch)
    return start_train(run, *overrides, env=env)


def report_of(run: Path) -> dict:
    return json.loads((run.parent / f"{run.name}.sim.json").read_text())


def check_run(run: Path, epochs: int) -> None:
    rows = metrics_without_timings(run)
    assert [int(r["epoch"]) for r in rows] == list(range(1, epochs + 1))
    for component in ("tokenizer", "world_model", "actor_critic"):
        assert any(r.get(f"{component}/skipped_nonfinite_updates") == "0.0" for r in rows), component
    assert any(r.get("collection/test/return_mean") for r in rows)  # an evaluation ran
    report = report_of(run)
    assert report["ops"] > 1000, report  # the models ran on the device
    assert int(torch.load(run / "checkpoints" / "state.pt", weights_only=True)["epoch"]) == epochs
    models = torch.load(run / "checkpoints" / "last.pt", weights_only=True)  # loads on a machine without GPU
    assert all(type(t) is torch.Tensor and t.device.type == "cpu" for t in models.values())


_SIM_RUNS: dict[str, Path] = {}  # once per process: pytest-xdist may tear a module fixture down between tests


@pytest.fixture(scope="module")
def sim_runs(tmp_path_factory):
    """Crafter killed (SIGKILL to its process group) once epoch 2 is saved, then resumed to its end
    (epoch 3); Atari and the off-policy `sac` path for 2 epochs. Each ``params.common.device=cuda`` on
    the simulated device; two processes at a time."""
    if _SIM_RUNS:
        return _SIM_RUNS
    base = tmp_path_factory.mktemp("sim")
    crafter, atari, sac = base / "crafter", base / "atari", base / "sac"
    two = ("params.common.epochs=2",)
    crafter_args = (*TINY, *SHORT_EPISODES["crafter"], *CUDA, "params.common.resume=auto")
    killed = start_sim_train(crafter, *crafter_args, kill_after_epoch=2)
    finish(start_sim_train(atari, *TINY, "env=atari", *SHORT_EPISODES["atari"], *CUDA, *two))
    assert killed.wait(timeout=600) == -9, stderr_of(killed)
    assert [int(r["epoch"]) for r in metrics_without_timings(crafter)] == [1, 2]
    finish(start_sim_train(crafter, *crafter_args),
           start_sim_train(sac, *TINY, *SHORT_EPISODES["crafter"], *CUDA, *two, "params.actor_critic.loss=sac"))
    _SIM_RUNS.update(crafter=crafter, atari=atari, sac=sac)
    return _SIM_RUNS


def test_crafter_run_on_the_device_with_a_resume(sim_runs):
    check_run(sim_runs["crafter"], 3)
    assert any((sim_runs["crafter"] / "media").rglob("*.*")), "no evaluation media"


def test_atari_run_on_the_device(sim_runs):
    check_run(sim_runs["atari"], 2)


def test_off_policy_sac_on_the_device(sim_runs):
    check_run(sim_runs["sac"], 2)
    assert any(r.get("actor_critic/loss_qvalue") for r in metrics_without_timings(sim_runs["sac"]))


def test_play_agent_in_the_world_model_on_the_device(sim_runs, tmp_path, monkeypatch):
    pytest.importorskip("pygame")
    from torchrl_deltairis.play import main as play

    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    shot = tmp_path / "agent_in_world_model.png"
    with simulated_cuda():
        ops = sim_device.OPS.total()
        assert play([str(sim_runs["crafter"]), "-a", "-h", "--fps", "1000", "--size", "256", "--seed", "0",
                     "--device", "cuda", "--max-steps", "3", "--screenshot", str(shot)]) == 0
        assert sim_device.OPS.total() > ops  # the models ran on the device
    assert shot.exists()


# ------------------------------------------------------------------ in this process
def test_imagination_env_in_a_stock_collector_on_the_device():
    from torchrl.collectors import Collector

    from test_imagination import H, context, recurrent_env
    from torchrl_deltairis.policy import ActorCriticTrunk, burn_in, make_actor

    with simulated_cuda() as device:
        models = small_models("atari_small").to(device)
        net = models.actor_critic.model

        def context_fn():
            td = context(models, batch=2, seed=5).to(device)
            h, c = burn_in(net, td[keys.CONTEXT_PIXELS][:, :-1])
            return td.set(keys.RECURRENT_STATE_H, h).set(keys.RECURRENT_STATE_C, c)

        env = recurrent_env(models, batch_size=[2], context_fn=context_fn)
        collector = Collector(env, make_actor(ActorCriticTrunk(net)), frames_per_batch=2 * H, total_frames=2 * H,
                              reset_at_each_iter=True, device=device, auto_register_policy_transforms=False)
        (batch,) = list(collector)
        collector.shutdown()
        assert batch.device == device and isinstance(batch[keys.NEXT_PIXELS], SimTensor)
        assert batch.batch_size == (2, H)


def test_runtime_measures_on_the_device():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "runtime.py"), *TINY, *CUDA,
                           "params.collection.train.num_envs=1", "params.collection.test.num_envs=1",
                           "--warmup", "0", "--repeats", "1", "--quiet"], capture_output=True, text=True,
                          timeout=600, cwd=ROOT, env={**__import__("os").environ, "OMP_NUM_THREADS": "1",
                                                      **sim_device.sim_env()})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "measured on simulated CUDA device" in proc.stdout, proc.stdout[-2000:]
