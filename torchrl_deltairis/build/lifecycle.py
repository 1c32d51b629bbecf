"""A run's life cycle: the run folder, the lock, resume, the random states, and the build of every part
in dependency order (env specs → models → policy → collector → components → evaluation).

Run folder (Hydra's ``outputs/YYYY-MM-DD/hh-mm-ss``, the working directory of ``train.py``)::

    config/trainer.yaml        the resolved config            metrics.csv      one row per epoch
    checkpoints/state.pt, last.pt   (see checkpoint.py)        dataset/train, dataset/test   episode stores
    media/reconstructions/     tokenizer reconstructions       scripts/resume.sh, scripts/play.sh
    media/episodes/{train,test}/{recent,best}/   saved episodes    media/videos/   test and imagination GIFs
    results.json               the final score (see results.py)   wandb/   the offline wandb run
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from torchrl_deltairis.build.checks import validate_config
from torchrl_deltairis.build.components import Generators, make_actor_critic_component, make_model_components
from torchrl_deltairis.build.data import check_disk_space, collection_schedule, make_collector, make_train_env
from torchrl_deltairis.build.evaluate import make_evaluate
from torchrl_deltairis.build.models import initialize_models, make_models
from torchrl_deltairis.checkpoint import STATE_FILE, load_checkpoint, save_checkpoint
from torchrl_deltairis.config import RunConfig
from torchrl_deltairis.data import EpisodeCounts
from torchrl_deltairis.media import EpisodeSaver
from torchrl_deltairis.metrics import RunLogger
from torchrl_deltairis.policy import ActorCriticTrunk
from torchrl_deltairis.reference import convert_reference_state_dict, to_reference_state_dict
from torchrl_deltairis.results import run_results, write_results
from torchrl_deltairis.runlock import RunLock
from torchrl_deltairis.trainer import Trainer


RESUME_SCRIPT = """#!/usr/bin/env bash
# Resume this run from its last checkpoint (epoch 0: its start), with the config it was started with
# (run from anywhere); the trainer replaces this shell (exec), so signals sent to the script reach it.
cd "$(dirname "$0")/.." && exec {python} {train} --config-path "$PWD/config" --config-name trainer \\
    hydra.run.dir=. params.common.resume=auto "$@"
"""

_log = logging.getLogger(__name__)


PLAY_SCRIPT = """#!/usr/bin/env bash
# Watch the agent, play in the world model (-w), watch the agent dream (-a), browse episodes (-e):
# see `python -m torchrl_deltairis.play --help` (needs the play extra: pip install "torchrl_deltairis[play]").
exec {python} -m torchrl_deltairis.play "$(dirname "$0")/.." "$@"
"""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_deterministic() -> None:
    """Bit-identical reruns on CUDA (``params.common.deterministic``): deterministic kernels (an op
    that has none warns, naming itself), no cuDNN autotuning, cuBLAS's fixed workspace."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def rng_state(generators: Generators) -> dict:
    """Every random state of the trainer's process: torch's, numpy's and Python's global generators
    and the run's own (segment samplers, minibatch order, imagination), so that a resumed run draws
    what the unkilled one would. (Env workers are not included: a resumed run's envs start new
    episodes.)"""
    kind, words, pos, has_gauss, gauss = np.random.get_state()  # as tensors and numbers: weights-only loadable
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": {"kind": kind, "words": torch.from_numpy(words.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "generators": {name: g.get_state() for name, g in generators.items()}}


def set_rng_state(state, generators: Generators) -> None:
    if isinstance(state, torch.Tensor):  # a checkpoint of an earlier version: torch's state only
        torch.set_rng_state(state)
        return
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["words"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(state["python"])
    for name, g in generators.items():
        if name in state["generators"]:
            g.set_state(state["generators"][name])


def should_resume(resume: bool | str, run_dir: Path) -> bool:
    """``params.common.resume``: true (a checkpoint must exist), false, or ``auto`` (resume when the run
    folder has a checkpoint, else start: a re-launched sweep resumes crashed runs, skips finished ones)."""
    if resume == "auto":
        return (run_dir / "checkpoints" / STATE_FILE).exists()
    return bool(resume)


def write_run_files(run: RunConfig, run_dir: Path, train_script: Path) -> None:
    (run_dir / "config").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(run.resolved), run_dir / "config" / "trainer.yaml")
    scripts = run_dir / "scripts"
    scripts.mkdir(exist_ok=True)
    python = sys.executable  # the interpreter (and so the environment) that started the run
    texts = {"resume.sh": RESUME_SCRIPT.format(python=python, train=train_script.resolve()),
             "play.sh": PLAY_SCRIPT.format(python=python)}
    for name, text in texts.items():
        (scripts / name).write_text(text)
        (scripts / name).chmod(0o755)


def build_trainer(cfg: DictConfig, run_dir: Path, train_script: Path, progress: bool = True,
                  check_disk: bool = True) -> Trainer:
    """Everything of a run, restored from ``checkpoints/`` when ``params.common.resume`` is set.

    Whatever can fail on the config (env ids, device, checkpoint, logger, the disk space the episode
    stores will need by the end of the schedule) fails before any env process starts. Everything
    started (the folder's lock, the logger, the env workers behind each collector) is registered on one
    ``ExitStack`` as it starts: if building fails, what was started is closed, last first; else the
    trainer's ``close()`` closes it all in that order. ``check_disk=False``: for a caller that stores a
    few batches only (benchmarks/runtime.py), not the schedule."""
    run = validate_config(cfg)  # the config, parsed once: the rest of the run reads its typed fields
    with contextlib.ExitStack() as started:
        started.callback(RunLock(run_dir).release)  # before anything is read or written: one process per folder
        warning = check_disk_space(run, run_dir) if check_disk else None  # a resume: what the folder holds counts
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        trainer = _open_run(run, run_dir, train_script, progress, started)
        trainer.on_close = (started.pop_all().close,)  # built: the trainer closes it all
        return trainer


def _open_run(run: RunConfig, run_dir: Path, train_script: Path, progress: bool,
              started: contextlib.ExitStack) -> Trainer:
    device = run.device
    if device.type == "cuda":  # TF32 matmuls and convolutions, as the reference
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if run.common.deterministic:
        make_deterministic()
    config = run.resolved
    state = load_checkpoint(run_dir / "checkpoints", config) if should_resume(run.common.resume, run_dir) else None
    logger = RunLogger(run_dir, wandb_cfg=run.wandb, tensorboard=run.tensorboard, config=config,
                       resume_epoch=int(state["epoch"]) if state is not None else None)
    started.callback(logger.close)
    seed_everything(run.seed)
    write_run_files(run, run_dir, train_script)
    resumed = f", resuming after epoch {int(state['epoch'])}" if state is not None else ""
    _log.info("run folder: %s (metrics.csv, checkpoints/, media/; scripts/resume.sh resumes it)%s", run_dir, resumed)
    if state is not None and int(state["epoch"]) >= run.common.epochs:
        # a finished run (a re-launched sweep, resume=auto): no env process, store or model to build
        return Trainer(epochs=run.common.epochs, device=device, collector=None, policy=None,
                       collection=collection_schedule(run), components=(), logger=logger,
                       save=lambda epoch: None, start_epoch=int(state["epoch"]) + 1, progress=progress)
    return _build_parts(run, run_dir, state, logger, started, progress)


def _build_parts(run: RunConfig, run_dir: Path, state: dict | None, logger: RunLogger, started: contextlib.ExitStack,
                 progress: bool) -> Trainer:
    seed, device, config = run.seed, run.device, run.resolved
    collector = None
    with contextlib.ExitStack() as env_alone:  # the env's workers, until a collector owns them
        env, store, num_actions = make_train_env(run, run_dir, seed)
        if env is not None:
            env_alone.callback(env.close)
        # in dependency order: env specs -> models -> policy -> collector -> components -> evaluation
        models = make_models(run, num_actions)
        sizes = {name: sum(p.numel() for p in getattr(models, name).parameters()) / 1e6
                 for name in ("tokenizer", "world_model", "actor_critic")}
        _log.info("models on %s: %s", device,
                  ", ".join(f"{name} {size:.2f}M parameters" for name, size in sizes.items()))
        trunk = ActorCriticTrunk(models.actor_critic.model, write_values=False)  # the acting policy network
        if env is not None:  # the first epoch's policy is uniform (epsilon 1); the trainer sets it per epoch
            collector = make_collector(env, trunk, store, run.collection.train,
                                       steps_per_batch=run.collection.train.steps_per_batch, device=device,
                                       epsilon=1.0)
            env_alone.pop_all()
            started.callback(collector.shutdown)  # it closes the env
    counts = EpisodeCounts()
    generators: Generators = {}
    components = make_model_components(run, models, store, counts, device, seed, generators)
    ac = make_actor_critic_component(run, models, store, counts, device, seed, trunk=trunk, generators=generators)
    components.append(ac.component)
    evaluate, test_collector, test_store = make_evaluate(run, run_dir, models, trunk, ac.imagine_segments, device,
                                                         seed)
    if test_collector is not None:
        started.callback(test_collector.shutdown)
    train_saver = EpisodeSaver(run_dir / "media" / "episodes" / "train", store,
                               run.collection.train.num_episodes_to_save)

    def finish(epoch: int, metrics: dict[str, float]) -> None:
        test_returns = test_store.returns().tolist()  # the latest evaluation's episodes, from its store
        if test_collector is not None and test_returns:  # evaluated with test episodes (not on a static dataset)
            history = [*logger.table.rows]
            write_results(run_dir, run_results(config["env"]["train"], seed, epoch, test_returns, history, metrics))

    def save(epoch: int) -> None:
        resume_state = {"epoch": epoch, "optimizers": {c.name: c.optimizer.state_dict() for c in components},
                        "counts": counts.state_dict(), "actor_critic_loss": ac.loss.state_dict(),
                        "excess_steps": collector.excess_steps if collector is not None else 0,
                        "store_steps": store.num_steps, "rng": rng_state(generators)}
        save_checkpoint(run_dir / "checkpoints", resume_state, to_reference_state_dict(models), config,
                        resumable=run.common.do_checkpoint)

    start_epoch = 1
    if state is None:
        loaded = initialize_models(models, run.initialization)
        if loaded:
            print(f"initialised {', '.join(loaded)} from {run.initialization.path_to_checkpoint}")
    else:
        models.load_state_dict(convert_reference_state_dict(state["models"], models))
        for c in components:
            c.optimizer.load_state_dict(state["optimizers"][c.name])
        counts.load_state_dict(state["counts"])
        if "actor_critic_loss" in state:  # a loss's own weights (a Q head, SAC's alpha, its targets)
            ac.loss.load_state_dict(state["actor_critic_loss"])
        if collector is not None:
            collector.excess_steps = int(state["excess_steps"])
            # the steps committed after this checkpoint belong to the interrupted epoch: they count
            # towards its collection, which goes on where it stopped (whole batches: the same total)
            collector.resumed_steps = store.num_steps - int(state.get("store_steps", store.num_steps))
        set_rng_state(state["rng"], generators)
        start_epoch = int(state["epoch"]) + 1
    return Trainer(epochs=run.common.epochs, device=device, collector=collector,
                   policy=collector.policy if collector is not None else None,
                   collection=collection_schedule(run), components=components, logger=logger, save=save,
                   evaluate=evaluate if run.evaluation.should else None,
                   eval_every=run.evaluation.every, start_epoch=start_epoch, progress=progress,
                   finish=finish, save_initial=state is None,
                   on_epoch_end=(lambda epoch, _: train_saver.update(epoch),))
