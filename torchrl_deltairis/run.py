"""A whole training run from a Hydra config: the run folder, every part wired, resume.

Run folder (Hydra's ``outputs/YYYY-MM-DD/hh-mm-ss``, the working directory of ``train.py``)::

    config/trainer.yaml        the resolved config            metrics.csv      one row per epoch
    checkpoints/state.pt, last.pt   (see checkpoint.py)        dataset/train, dataset/test   episode stores
    media/reconstructions/     tokenizer reconstructions       scripts/resume.sh
    wandb/                     the offline wandb run (``wandb sync`` uploads it)
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDict, TensorDictBase

from torchrl_deltairis import keys
from torchrl_deltairis.checkpoint import load_checkpoint, save_checkpoint
from torchrl_deltairis.collectors import EpisodeCollector, ExplorationPolicy
from torchrl_deltairis.data import EpisodeCounts, EpisodeStore
from torchrl_deltairis.envs import make_batched_env
from torchrl_deltairis.envs.imagination import ImaginationEnv
from torchrl_deltairis.evaluation import evaluate_loss, save_reconstructions, traverse_segments
from torchrl_deltairis.factory import (
    collection_schedule,
    make_component,
    make_model_components,
    make_models,
    make_train_collection,
    resolve_device,
    validate_env_configs,
)
from torchrl_deltairis.metrics import RunLogger
from torchrl_deltairis.objectives import TokenizerLoss, WorldModelLoss
from torchrl_deltairis.objectives.actor_critic_loss import (
    ActorCriticLossConfig,
    imagine,
    make_actor_critic_loss,
    make_target_updater,
)
from torchrl_deltairis.policy import ActorCriticTrunk, CollectBurnIn, make_actor, recurrent_state_spec
from torchrl_deltairis.reference import DeltaIrisModels, convert_reference_state_dict, to_reference_state_dict
from torchrl_deltairis.trainer import Component, Trainer

RESUME_SCRIPT = """#!/usr/bin/env bash
# Resume this run from its last checkpoint, with the config it was started with (run from anywhere).
cd "$(dirname "$0")/.." && {python} {train} --config-path "$PWD/config" --config-name trainer \\
    hydra.run.dir=. params.common.resume=true "$@"
"""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def write_run_files(cfg: DictConfig, run_dir: Path, train_script: Path) -> None:
    (run_dir / "config").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / "config" / "trainer.yaml", resolve=True)
    scripts = run_dir / "scripts"
    scripts.mkdir(exist_ok=True)
    python = sys.executable  # the interpreter (and so the environment) that started the run
    texts = {"resume.sh": RESUME_SCRIPT.format(python=python, train=train_script.resolve())}
    for name, text in texts.items():
        (scripts / name).write_text(text)
        (scripts / name).chmod(0o755)


def context_of(segments: TensorDictBase) -> TensorDict:
    """Actor-critic segments [B, burn_in + 1] → the imagination context (all frames, actions but the last)."""
    return TensorDict({keys.PIXELS: segments.get(keys.PIXELS), keys.ACTION: segments.get(keys.ACTION)[:, :-1]},
                      batch_size=segments.batch_size[:1])


def make_actor_critic_component(cfg: DictConfig, models: DeltaIrisModels, store: EpisodeStore, counts: EpisodeCounts,
                                device: torch.device, seed: int) -> tuple[Component, ActorCriticTrunk]:
    """Imagination from real segments, then the configured loss (``params.actor_critic.loss``)."""
    ac = cfg.params.actor_critic
    loss_cfg = ActorCriticLossConfig(loss=ac.get("loss", "reinforce"), gamma=ac.gamma, lambda_=ac.lambda_,
                                     entropy_weight=ac.entropy_weight)
    actor_critic = models.actor_critic
    env = ImaginationEnv(models.tokenizer, models.world_model, sample=True,
                         policy_state_spec=recurrent_state_spec(actor_critic.config.lstm_dim, device=device))
    trunk = ActorCriticTrunk(actor_critic.model, write_values=False)
    actor = make_actor(trunk)
    loss = make_actor_critic_loss(actor_critic, loss_cfg)
    if loss_cfg.loss == "reinforce":
        after_update = make_target_updater(loss).step
    else:  # the stock losses own no target: the EMA critic that gives imagination's baselines still moves

        def after_update() -> None:
            actor_critic.update_target(loss_cfg.target_ema_decay)

    component = make_component(
        cfg, "actor_critic", actor_critic.model, loss, store, counts, device, seed, after_update=after_update,
        prepare=lambda segments: imagine(env, actor, actor_critic, context_of(segments), ac.imagination_horizon))
    return component, trunk


def make_evaluate(cfg: DictConfig, run_dir: Path, models: DeltaIrisModels, trunk: ActorCriticTrunk,
                  device: torch.device, seed: int):
    """Test episodes with the current policy (epsilon 0, sampling), then the tokenizer and world-model
    losses over them and a reconstruction image, as the reference's evaluation."""

    test = cfg.params.collection.test
    env = make_batched_env(OmegaConf.to_container(cfg.env.test, resolve=True), test.num_envs, seed=seed + 10_000)
    store = EpisodeStore(run_dir / "dataset" / "test", capacity=int(cfg.params.collection.get("test_capacity", 2_000_000)))
    policy = ExplorationPolicy(int(env.action_spec.space.n), trunk, epsilon=test.config.epsilon,
                               temperature=test.config.temperature, should_sample=test.config.should_sample)
    collector = EpisodeCollector(env, policy, store, steps_per_batch=cfg.params.collection.train.steps_per_batch,
                                 before_collect=CollectBurnIn(trunk, store, test.config.burn_in_length, policy=policy))
    training = cfg.params.training
    losses = {"tokenizer": TokenizerLoss(models.tokenizer, models.configs.tokenizer_loss),
              "world_model": WorldModelLoss(models.world_model, models.tokenizer, models.configs.world_model_loss)}

    def evaluate(epoch: int) -> dict[str, float]:
        store.clear()
        metrics = collector.collect_episodes(int(test.config.num_episodes)).summary("collection/test/")
        for name, loss in losses.items():
            if epoch > training[name].start_after_epochs:
                t = training[name]
                batches = traverse_segments(store, t.sequence_length, t.batch_num_samples)
                metrics.update(evaluate_loss(loss, batches, device, prefix=f"eval/{name}/"))
        if cfg.params.evaluation.tokenizer.save_reconstructions and epoch > training.tokenizer.start_after_epochs:
            segments = next(traverse_segments(store, training.tokenizer.sequence_length, 8))
            save_reconstructions(models.tokenizer, segments.to(device), run_dir / "media" / "reconstructions", epoch)
        return metrics

    return evaluate, collector


def build_trainer(cfg: DictConfig, run_dir: Path, train_script: Path, progress: bool = True) -> Trainer:
    """Everything of a run, restored from ``checkpoints/`` when ``params.common.resume`` is set.

    Whatever can fail on the config (env ids, device, checkpoint, logger) fails before any env
    process starts; if building fails later, the processes already started are shut down."""
    validate_env_configs(cfg)
    device = resolve_device(cfg.params.common.device)
    config = OmegaConf.to_container(cfg, resolve=True)
    state = load_checkpoint(run_dir / "checkpoints", config) if cfg.params.common.resume else None
    logger = RunLogger(run_dir, wandb_cfg=OmegaConf.to_container(cfg.wandb, resolve=True),
                       tensorboard=bool(cfg.get("tensorboard", False)), config=config,
                       resume_epoch=int(state["epoch"]) if state is not None else None)
    seed_everything(int(cfg.params.common.seed))
    write_run_files(cfg, run_dir, train_script)
    started = [logger.close]
    try:
        return _assemble(cfg, run_dir, device, config, state, logger, started, progress)
    except BaseException:
        for close in reversed(started):
            close()
        raise


def _assemble(cfg: DictConfig, run_dir: Path, device: torch.device, config: dict, state: dict | None,
              logger: RunLogger, started: list, progress: bool) -> Trainer:
    seed = int(cfg.params.common.seed)
    collector, store = make_train_collection(cfg, run_dir, seed)
    started.append(collector.shutdown)
    models = make_models(cfg, collector.policy.num_actions, device)
    counts = EpisodeCounts()
    components = make_model_components(cfg, models, store, counts, device, seed)
    ac_component, trunk = make_actor_critic_component(cfg, models, store, counts, device, seed)
    components.append(ac_component)
    collector.policy.set_policy(trunk)
    collector.before_collect = CollectBurnIn(trunk, store, cfg.params.actor_critic.burn_in_length,
                                             policy=collector.policy)
    evaluate, test_collector = make_evaluate(cfg, run_dir, models, trunk, device, seed)
    started.append(test_collector.shutdown)

    def save(epoch: int) -> None:
        resume_state = {"epoch": epoch, "optimizers": {c.name: c.optimizer.state_dict() for c in components},
                        "counts": counts.state_dict(), "excess_steps": collector.excess_steps,
                        "rng": torch.get_rng_state()}
        save_checkpoint(run_dir / "checkpoints", resume_state, to_reference_state_dict(models), config)

    start_epoch = 1
    if state is not None:
        models.load_state_dict(convert_reference_state_dict(state["models"], models))
        for c in components:
            c.optimizer.load_state_dict(state["optimizers"][c.name])
        counts.load_state_dict(state["counts"])
        collector.excess_steps = int(state["excess_steps"])
        torch.set_rng_state(state["rng"])
        start_epoch = int(state["epoch"]) + 1
    return Trainer(epochs=int(cfg.params.common.epochs), device=device, collector=collector, policy=collector.policy,
                   collection=collection_schedule(cfg), components=components, logger=logger, save=save,
                   evaluate=evaluate if cfg.params.evaluation.should else None,
                   eval_every=int(cfg.params.evaluation.every), start_epoch=start_epoch, progress=progress,
                   on_close=(collector.shutdown, test_collector.shutdown, logger.close))
