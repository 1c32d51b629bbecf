"""The one place where configs become objects: devices, envs, store, collector, models, components.

It reads the Hydra config laid out like the reference's (``env.train``, ``env.test``,
``params.{common,collection,training,evaluation,tokenizer,world_model,actor_critic}``); everything it
builds is a plain object handed to the ``Trainer``.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDict, TensorDictBase
from torchrl.envs import EnvBase

from torchrl_deltairis.checkpoint import read_torch_file
from torchrl_deltairis.collectors import EpisodeCollector, ExplorationPolicy
from torchrl_deltairis.data import COMPONENTS, EpisodeCounts, EpisodeStore, SegmentSampler, make_segment_buffer
from torchrl_deltairis.data.store import allocated_bytes, store_bytes
from torchrl_deltairis.data.transfer import to_device
from torchrl_deltairis.envs import AtariConfig, GymConfig, env_config, make_batched_env, make_env
from torchrl_deltairis.objectives import TokenizerLoss, WorldModelLoss
from torchrl_deltairis.envs.imagination import ImaginationEnv, imagine
from torchrl_deltairis.objectives.actor_critic_loss import (
    ActorCriticLossConfig,
    MaskedLoss,
    build_actor_critic_loss,
    make_target_updater,
    minibatches,
    resolve_loss,
    uses_value_estimator,
)
from torchrl_deltairis.modules.models import (
    COMPILE_MODES,
    Execution,
    compile_models,
    configure_execution,
    resolve_execution,
    valid_compile_mode,
)
from torchrl_deltairis.optim import make_optimizer
from torchrl_deltairis.reference import (
    DeltaIrisModels,
    ReferenceCheckpointError,
    configs_from_reference,
    convert_reference_state_dict,
)
from torchrl_deltairis import functional, keys
from torchrl_deltairis.policy import ActorCriticTrunk, CollectBurnIn, burn_in, make_actor, recurrent_state_spec
from torchrl_deltairis.trainer import CollectionSchedule, Component, ComponentSchedule

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
Generators = dict[str, torch.Generator]  # a run's named generators, saved in and restored from its checkpoints


def resolve_device(name: str) -> torch.device:
    """``"auto"`` is the first GPU when there is one, else the CPU; other names are checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"params.common.device={name!r} is not a device; expected one of {DEVICE_CHOICES}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"params.common.device={name!r} but no CUDA device is available; use 'auto' or 'cpu'")
    return device


def validate_env_configs(cfg: DictConfig) -> None:
    """Fails on an unknown env id or key, or on frames of another size than the models', before any work."""
    for split in ("train", "test"):
        size = env_config(OmegaConf.to_container(cfg.env[split], resolve=True)).size
        for model in ("tokenizer", "world_model"):
            image_size = cfg.params[model].image_size
            if size != image_size:
                raise ValueError(f"env.{split}.size={size} but params.{model}.image_size={image_size}; expected "
                                 "the env's frames at the models' size (set one to the other)")


def _check_at_least(cfg: DictConfig, path: str, minimum: int) -> None:
    value = OmegaConf.select(cfg, path)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{path}={value!r}; expected an integer >= {minimum}")


def static_dataset(cfg: DictConfig) -> Path | None:
    """``params.collection.path_to_static_dataset``: a folder with ``train/`` and ``test/`` episode
    stores (e.g. another run's ``dataset/``), trained on without collecting; None when unset."""
    path = cfg.params.collection.get("path_to_static_dataset")
    if not path:
        return None
    path = Path(path).expanduser().resolve()
    for split in ("train", "test"):
        if not (path / split / "commit.json").exists():
            raise ValueError(f"params.collection.path_to_static_dataset={str(path)!r} has no episode store at "
                             f"{path / split}; expected a run's dataset/ folder holding train/ and test/ stores")
    return path


def validate_config(cfg: DictConfig) -> None:
    """Every check that needs no env, model or file written: env ids and keys, device, choices, budgets,
    model shapes, paths. Called first, so that a bad override fails in a second, naming the key."""
    validate_env_configs(cfg)
    execution_of(cfg, resolve_device(cfg.params.common.device))
    if not valid_compile_mode(cfg.params.common.get("compile", False)):
        raise ValueError(f"params.common.compile={cfg.params.common.compile!r}; expected one of {list(COMPILE_MODES)}")
    for flag in ("do_checkpoint", "deterministic"):
        if not isinstance(cfg.params.common.get(flag, False), bool):
            raise ValueError(f"params.common.{flag}={cfg.params.common[flag]!r}; expected true or false")
    loss = resolve_loss(actor_critic_loss_config(cfg))
    several = loss.mode == "off_policy" or (loss.epochs, loss.num_minibatches) != (1, 1)
    if several and cfg.params.training.actor_critic.grad_acc_steps != 1:
        raise ValueError(f"params.training.actor_critic.grad_acc_steps={cfg.params.training.actor_critic.grad_acc_steps}"
                         " with several updates per imagined batch (params.actor_critic.updates); expected 1")
    # the source of interpolated values first, so that the error names the key that was set
    _check_number(cfg, "params.actor_critic.burn_in_length", 0, None, False, False)
    for path in ("common.epochs", "collection.train.num_envs", "collection.train.steps_per_batch",
                 "collection.train.config.num_steps_first_epoch", "collection.test.num_envs",
                 "collection.test.config.num_episodes", "evaluation.every", "actor_critic.imagination_horizon"):
        _check_at_least(cfg, f"params.{path}", 1)
    for name in COMPONENTS:
        for key, minimum in (("batch_num_samples", 1), ("steps_per_epoch", 0), ("grad_acc_steps", 1),
                             ("start_after_epochs", 0), ("sequence_length", 2 if name == "tokenizer" else 1)):
            _check_at_least(cfg, f"params.training.{name}.{key}", minimum)
    for name in ("tokenizer", "world_model"):
        for key, minimum in (("batch_num_samples", 1), ("start_after_epochs", 0)):
            _check_at_least(cfg, f"params.evaluation.{name}.{key}", minimum)
    for name in COMPONENTS:
        key = learning_rate_key(cfg, name)
        value = OmegaConf.select(cfg, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{key}={value!r}; expected a number > 0")
    for path, low, high, low_open, high_open in _RANGES:
        _check_number(cfg, path, low, high, low_open, high_open)
    configs = configs_from_reference(OmegaConf.to_container(cfg.params, resolve=True), num_actions=2)  # shapes
    _check_context(cfg, configs)
    static_dataset(cfg)
    path = cfg.params.initialization.get("path_to_checkpoint")
    if path:
        state = read_torch_file(path, "params.initialization.path_to_checkpoint")
        if not isinstance(state, dict):
            raise ValueError(f"params.initialization.path_to_checkpoint={path!r} holds a {type(state).__name__}; "
                             "expected a state_dict (a run's checkpoints/last.pt or a reference agent state_dict)")


# (path, low, high, low excluded, high excluded): every numeric field whose range is known
_RANGES = [
    *[(f"params.training.{c}.{key}", low, None, low_open, False) for c in COMPONENTS
      for key, low, low_open in (("max_grad_norm", 0, True), ("priority_alpha", 0, False), ("weight_decay", 0, False))],
    *[(f"params.collection.{split}.config.{key}", low, high, lo, hi) for split in ("train", "test")
      for key, low, high, lo, hi in (("epsilon", 0, 1, False, False), ("temperature", 0, None, True, False))],
    ("params.actor_critic.gamma", 0, 1, False, False), ("params.actor_critic.lambda_", 0, 1, False, False),
    ("params.actor_critic.entropy_weight", 0, None, False, False),
    ("params.actor_critic.target_ema_decay", 0, 1, False, True), ("params.actor_critic.ppo_clip_epsilon", 0, None, True, False),
    ("params.tokenizer.codebook_ema_decay", 0, 1, False, True), ("params.tokenizer.freqs_ema_decay", 0, 1, False, True),
    *[(f"params.tokenizer.loss.{w}", 0, None, False, False)
      for w in ("commitment_weight", "l1_weight", "l2_weight", "worst_pixel_weight")],
    *[(f"params.world_model.{w}", 0, None, False, False) for w in ("latents_weight", "rewards_weight", "ends_weight")],
    *[(f"params.world_model.transformer_config.{p}", 0, 1, False, True)
      for p in ("embed_pdrop", "resid_pdrop", "attn_pdrop")],
    ("env.train.repeat_action_probability", 0, 1, False, False), ("env.test.repeat_action_probability", 0, 1, False, False),
]


def _check_number(cfg: DictConfig, path: str, low, high, low_open: bool, high_open: bool) -> None:
    value = OmegaConf.select(cfg, path, default=None)
    if value is None:
        return  # not set in this config (e.g. repeat_action_probability outside Atari)
    below = value <= low if low_open else value < low if isinstance(value, (int, float)) else True
    above = high is not None and isinstance(value, (int, float)) and (value >= high if high_open else value > high)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or below or above:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        expected = f"a number in {left}{low}, {high}{right}" if high is not None else \
            f"a number {'>' if low_open else '>='} {low}"
        raise ValueError(f"{path}={value!r}; expected {expected}")


def _check_context(cfg: DictConfig, configs) -> None:
    """The world model's context (``transformer_config.max_blocks`` frames) must hold its training
    sequences, the actor-critic's context segment (burned in at once) and the imagination that follows
    it (the reference flushed the context there without a word; the imagination env refuses)."""
    max_blocks = configs.world_model.transformer_config.max_blocks
    t = cfg.params.training
    for what, blocks in (("params.training.world_model.sequence_length", int(t.world_model.sequence_length)),
                         ("params.training.actor_critic.sequence_length", int(t.actor_critic.sequence_length))):
        if blocks > max_blocks:
            raise ValueError(f"params.world_model.transformer_config.max_blocks={max_blocks}; expected >= {what} "
                             f"= {blocks} (the world model's context, in frames)")
    horizon = int(cfg.params.actor_critic.imagination_horizon)
    imagined = int(t.actor_critic.sequence_length) + horizon - 1
    if imagined > max_blocks:
        raise ValueError(f"params.world_model.transformer_config.max_blocks={max_blocks}; expected >= "
                         f"params.training.actor_critic.sequence_length + params.actor_critic.imagination_horizon - 1 "
                         f"= {imagined} (the context frames and the imagined steps)")


def initialize_models(models: DeltaIrisModels, cfg: DictConfig) -> list[str]:
    """``params.initialization``: loads the chosen parts (``load_tokenizer``, ``load_world_model``,
    ``load_actor_critic``) from a reference-format checkpoint (a run's ``checkpoints/last.pt``, the
    reference's agent state_dict, or our ``state.pt``). Returns the parts loaded."""
    init = cfg.params.initialization
    if not init.get("path_to_checkpoint"):
        return []
    path = Path(init.path_to_checkpoint).expanduser()
    state = read_torch_file(path, "params.initialization.path_to_checkpoint")
    for wrapper in ("models", "state_dict"):  # our state.pt, a parity fixture
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    loaded = []
    for part in ("tokenizer", "world_model", "actor_critic"):
        if not init.get(f"load_{part}", True):
            continue
        prefix = f"{part}."
        sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not sub:
            raise ValueError(f"params.initialization.path_to_checkpoint={str(path)!r} holds no {part} weights "
                             f"(no key starts with {prefix!r}); set params.initialization.load_{part}=false")
        module = getattr(models, part)
        try:
            converted = convert_reference_state_dict(sub, module)
        except ReferenceCheckpointError as err:  # one line: the first problem, and how many more
            problems = [line.strip() for line in str(err).splitlines()[1:] if line.strip()] or [str(err)]
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise ValueError(f"params.initialization.path_to_checkpoint={str(path)!r} is a checkpoint of another "
                             f"model: {part}.{problems[0].removeprefix('key ')}{more}") from None
        module.load_state_dict(converted)
        loaded.append(part)
    return loaded


def store_capacity(cfg: DictConfig) -> int:
    """Room for every real training step of the schedule, plus one batch of overshoot per epoch."""
    col = cfg.params.collection.train
    epochs = min(cfg.params.common.epochs, col.stop_after_epochs)
    steps = col.config.num_steps_first_epoch + max(epochs - 1, 0) * col.config.num_steps
    return int(steps + epochs * col.num_envs * col.steps_per_batch)


def capacity_of_test_store(cfg: DictConfig) -> int:
    """``params.collection.test_capacity`` (absent: 2M), the most steps one evaluation may store."""
    return int(cfg.params.collection.get("test_capacity", 2_000_000))


def episode_step_limit(env: DictConfig) -> int | None:
    """The most agent steps of one episode of ``env`` (an ``env.train``/``env.test`` node), from its
    time limit: Crafter's ``max_episode_steps``; Atari's, in raw frames, over ``frame_skip``; a gym
    env's, or else its registration's; None when the env has none."""
    typed = env_config(OmegaConf.to_container(env, resolve=True))
    if isinstance(typed, AtariConfig):
        return math.ceil(typed.max_episode_steps / typed.frame_skip)
    if isinstance(typed, GymConfig) and typed.max_episode_steps is None:
        import gymnasium

        try:
            return gymnasium.spec(typed.id).max_episode_steps
        except gymnasium.error.Error:
            return None
    return typed.max_episode_steps


GB = 1e9


@dataclass(frozen=True)
class DiskNeed:
    """What a run's episode stores will hold on disk at the end of its schedule (bytes)."""

    train_steps: int  # steps the train store holds by the end of the schedule
    test_steps: int  # the most steps one evaluation stores (an upper bound: episodes at their time limit)
    train_bytes: int  # disk bytes each store takes then
    test_bytes: int
    held_bytes: int  # what the stores of this run folder already take (a resumed run)
    needed_bytes: int  # what they still have to take: per store, its final bytes minus what it holds


def disk_need(cfg: DictConfig, run_dir: Path) -> DiskNeed:
    """The disk the run's episode stores (``run_dir/dataset/{train,test}``) still need by the end of
    the schedule, from the config alone (no env built).

    Train store: each epoch up to ``min(params.common.epochs, params.collection.train.stop_after_epochs)``
    collects ``config.num_steps_first_epoch`` (epoch 1) or ``config.num_steps`` steps in whole batches of
    ``num_envs x steps_per_batch``, the overshoot counted towards the next epoch (as
    ``EpisodeCollector.collect``). Test store (when ``params.evaluation.should``): it is cleared before
    each evaluation and its rows reused, so it takes the most one evaluation stores: at most
    ``params.collection.test.config.num_episodes`` episodes at the env's time limit
    (``episode_step_limit``), capped by ``test_capacity``. A store of N steps takes
    ``store_bytes(N, frame_shape)``, frames ``(params.world_model.image_channels, size, size)`` with the
    env's ``size``. A resumed run's stores already hold part of it on disk (``allocated_bytes``): only
    the rest is needed. A static dataset writes no store: nothing is needed."""
    if static_dataset(cfg) is not None:
        return DiskNeed(0, 0, 0, 0, 0, 0)
    col = cfg.params.collection.train
    schedule, batch = collection_schedule(cfg), int(col.num_envs) * int(col.steps_per_batch)
    train_steps = excess = 0
    for epoch in range(1, min(int(cfg.params.common.epochs), int(col.stop_after_epochs)) + 1):
        target = max(schedule.steps_at(epoch) - excess, 0)
        collected = -(-target // batch) * batch  # whole batches
        train_steps, excess = train_steps + collected, collected - target
    test_steps = 0
    if cfg.params.evaluation.should:
        limit = episode_step_limit(cfg.env.test)
        test_steps = capacity_of_test_store(cfg)
        if limit is not None:
            test_steps = min(test_steps, int(cfg.params.collection.test.config.num_episodes) * limit)
    needed, held, final = 0, 0, {}
    for split, steps in (("train", train_steps), ("test", test_steps)):
        size = env_config(OmegaConf.to_container(cfg.env[split], resolve=True)).size
        final[split] = store_bytes(steps, (int(cfg.params.world_model.image_channels), size, size))
        holds = allocated_bytes(run_dir / "dataset" / split)
        held, needed = held + holds, needed + max(final[split] - holds, 0)
    return DiskNeed(train_steps, test_steps, final["train"], final["test"], held, needed)


def check_disk_space(cfg: DictConfig, run_dir: Path) -> str | None:
    """Compares ``disk_need`` with the free space of ``run_dir``'s disk (``shutil.disk_usage``), before
    the run writes anything: raises a one-line ``ValueError`` when the stores will not fit, returns a
    one-line warning when they fit with less than 10 % of their need to spare (other files, such as
    checkpoints and media, need room too), None otherwise."""
    need = disk_need(cfg, run_dir)
    if need.needed_bytes == 0:
        return None
    free = shutil.disk_usage(run_dir).free
    if free >= 1.1 * need.needed_bytes:
        return None
    col = cfg.params.collection
    more = f", {need.held_bytes / GB:.1f} GB of it already on disk" if need.held_bytes else ""
    lower = (f"params.collection.train.config.num_steps_first_epoch={col.train.config.num_steps_first_epoch}, "
            f"params.collection.train.config.num_steps={col.train.config.num_steps}, "
            f"params.collection.train.stop_after_epochs={col.train.stop_after_epochs}")
    if need.test_bytes:
        lower += f" or params.collection.test.config.num_episodes={col.test.config.num_episodes}"
    what = (f"the episode stores need {need.needed_bytes / GB:.1f} GB more by the end of the schedule "
            f"(train {need.train_steps} steps, {need.train_bytes / GB:.1f} GB; test up to {need.test_steps} steps, "
            f"{need.test_bytes / GB:.1f} GB{more})")
    if free < need.needed_bytes:
        raise ValueError(f"{what} but {run_dir} has {free / GB:.1f} GB free; expected at least that much free: "
                         f"lower {lower}, or free some space")
    return (f"{what} and {run_dir} has {free / GB:.1f} GB free, less than 10 % to spare; a full disk stops the "
            f"run (resumable once space is freed); lower {lower} to keep room")


def collection_schedule(cfg: DictConfig) -> CollectionSchedule:
    """The real-env collection per epoch; none at all on a static dataset."""
    col = cfg.params.collection.train
    return CollectionSchedule(num_steps=col.config.num_steps, num_steps_first_epoch=col.config.num_steps_first_epoch,
                              stop_after_epochs=0 if static_dataset(cfg) else col.stop_after_epochs,
                              epsilon=col.config.epsilon)


def make_train_env(cfg: DictConfig, run_dir: Path, seed: int) -> tuple[EnvBase | None, EpisodeStore, int]:
    """The training envs (``ParallelEnv`` of ``num_envs``), the store at ``run_dir/dataset/train`` and
    the number of actions. On a static dataset: no env, the dataset's train store."""
    col = cfg.params.collection.train
    env_cfg = OmegaConf.to_container(cfg.env.train, resolve=True)
    static = static_dataset(cfg)
    if static is not None:
        probe = make_env(env_cfg)
        num_actions = int(probe.action_spec.space.n)
        probe.close()
        return None, EpisodeStore(static / "train"), num_actions
    env = make_batched_env(env_cfg, col.num_envs, seed=seed)
    store = EpisodeStore(run_dir / "dataset" / "train", capacity=store_capacity(cfg))
    return env, store, int(env.action_spec.space.n)


def make_collector(env: EnvBase, trunk: ActorCriticTrunk, store: EpisodeStore, collection: DictConfig, *,
                   steps_per_batch: int, device: torch.device, epsilon: float) -> EpisodeCollector:
    """A collector of ``env`` into ``store`` with the policy ``trunk`` (``params.collection.{train,test}``:
    temperature, sampling, burn-in). The trunk's primer goes on the env, so the LSTM state travels from
    step to step in the TensorDict; the policy runs on ``device``, the env and the store on the CPU."""
    env.append_transform(trunk.make_tensordict_primer())
    conf = collection.config
    policy = ExplorationPolicy(int(env.action_spec.space.n), trunk, epsilon=epsilon, temperature=conf.temperature,
                               should_sample=conf.should_sample, device=device)
    burn = CollectBurnIn(trunk, store, int(conf.burn_in_length), policy=policy)
    return EpisodeCollector(env, policy, store, steps_per_batch=steps_per_batch, policy_device=device,
                            before_collect=burn)


def execution_of(cfg: DictConfig, device: torch.device) -> Execution:
    """``params.common.memory_format`` and ``conv_batch_chunk`` (each ``auto`` or absent resolved for
    ``device``) and ``params.training.imagination_bf16`` (absent: false), by ``modules.models.resolve_execution``."""
    return resolve_execution(device, cfg.params.common.get("memory_format", "auto"),
                             cfg.params.common.get("conv_batch_chunk", "auto"),
                             cfg.params.training.get("imagination_bf16", False))


def make_models(cfg: DictConfig, num_actions: int, device: torch.device) -> DeltaIrisModels:
    """The three networks from ``params.{tokenizer,world_model,actor_critic}`` (the reference's layout),
    on ``device`` in the run's memory format and convolution chunks, compiled if asked."""
    configs = configs_from_reference(OmegaConf.to_container(cfg.params, resolve=True), num_actions=num_actions)
    models = configure_execution(DeltaIrisModels(configs).to(device), execution_of(cfg, device))
    return compile_models(models, cfg.params.common.get("compile", False))


def schedule_of(cfg: DictConfig, name: str) -> ComponentSchedule:
    t = cfg.params.training[name]
    return ComponentSchedule(start_after_epochs=t.start_after_epochs, steps_per_epoch=t.steps_per_epoch,
                             steps_first_epoch=t.get("steps_first_epoch"), grad_acc_steps=t.grad_acc_steps,
                             max_grad_norm=t.max_grad_norm)


def learning_rate_key(cfg: DictConfig, name: str) -> str:
    """``params.training.<name>.learning_rate`` when set (not in the reference), else the reference's
    one ``params.training.learning_rate`` for all three components."""
    if cfg.params.training[name].get("learning_rate") is not None:
        return f"params.training.{name}.learning_rate"
    return "params.training.learning_rate"


def learning_rate(cfg: DictConfig, name: str) -> float:
    return float(OmegaConf.select(cfg, learning_rate_key(cfg, name)))


def make_segment_source(cfg: DictConfig, name: str, store: EpisodeStore, counts: EpisodeCounts,
                        device: torch.device, seed: int, generators: Generators | None = None,
                        ) -> tuple[Callable[[], TensorDictBase], Callable]:
    """``params.training.<name>``'s segments (length, batch, priority): ``(sample, increment_counts)``,
    ``sample()`` giving a batch [B, L] on the CPU (the trainer counts its episodes there, then moves it
    to ``device`` with :func:`~torchrl_deltairis.data.transfer.to_device`). The sampler's generator is registered in
    ``generators`` as ``<name>/segments`` (the checkpoint saves it: a resumed run draws the batches
    the unkilled one would)."""
    if name not in COMPONENTS:
        raise ValueError(f"unknown component {name!r}; valid: {list(COMPONENTS)}")
    t = cfg.params.training[name]
    sampler = SegmentSampler(store, counts, name, t.sequence_length, can_sample_beyond_end=name != "actor_critic",
                             alpha=t.priority_alpha, seed=seed + COMPONENTS.index(name))
    if generators is not None:
        generators[f"{name}/segments"] = sampler.generator
    buffer = make_segment_buffer(store, sampler, t.batch_num_samples)
    return buffer.sample, sampler.increment_counts


def make_component(cfg: DictConfig, name: str, module: torch.nn.Module, loss: torch.nn.Module,
                   store: EpisodeStore, counts: EpisodeCounts, device: torch.device, seed: int, *,
                   trained: torch.nn.Module | None = None, source=None, generators: Generators | None = None,
                   **kwargs) -> Component:
    """A component sampling its own segments (``params.training.<name>``); the optimizer steps
    ``trained`` (default: ``module``), e.g. the network plus a loss's own head."""
    sample, increment_counts = source or make_segment_source(cfg, name, store, counts, device, seed, generators)
    t = cfg.params.training[name]
    kind = "adam" if name == "actor_critic" else "adamw"
    optimizer = make_optimizer(trained if trained is not None else module, lr=learning_rate(cfg, name),
                               weight_decay=t.get("weight_decay", 0.0), kind=kind)
    return Component(name=name, module=module, loss=loss, optimizer=optimizer, sample=sample,
                     increment_counts=increment_counts, schedule=schedule_of(cfg, name), **kwargs)


def actor_critic_loss_config(cfg: DictConfig) -> ActorCriticLossConfig:
    """``params.actor_critic``'s loss fields (every field of ``ActorCriticLossConfig``), checked."""
    node = OmegaConf.to_container(cfg.params.actor_critic, resolve=True)
    return ActorCriticLossConfig.from_config(node)


def context_of(segments: TensorDictBase) -> TensorDict:
    """Actor-critic segments [B, burn_in + 1] → the imagination context (all frames, actions but the last)."""
    return TensorDict({keys.PIXELS: segments.get(keys.PIXELS), keys.ACTION: segments.get(keys.ACTION)[:, :-1]},
                      batch_size=segments.batch_size[:1])


@dataclass
class ActorCriticParts:
    """What the actor-critic's building gives the rest of the run."""

    component: Component
    trunk: ActorCriticTrunk  # the policy network on TensorDicts (real collection)
    dream: Callable[[TensorDictBase], TensorDictBase]  # segments [B, burn_in + 1] -> imagined [B, H] (videos)
    loss: torch.nn.Module  # the configured LossModule (its state goes into the checkpoint)
    env: ImaginationEnv  # the world model as a TorchRL env: dream's, the on-policy loss's (off-policy: a fixed-batch twin)


def make_actor_critic_component(cfg: DictConfig, models: DeltaIrisModels, store: EpisodeStore,
                                counts: EpisodeCounts, device: torch.device, seed: int, *,
                                trunk: ActorCriticTrunk | None = None,
                                generators: Generators | None = None) -> ActorCriticParts:
    """Imagination from real segments, then the configured loss (``params.actor_critic.loss`` and
    ``updates``, the contract of ``objectives/actor_critic_loss.py``): on-policy, each imagined batch
    feeds ``epochs`` passes of row minibatches; off-policy, a stock ``Collector`` on the imagination
    env fills a stock replay buffer that the loss samples from. ``trunk``: the acting policy network
    (the one the real collectors use), built here when not given. ``generators``: where the run
    registers the component's generators (checkpointed), as ``make_segment_source``."""
    generators = {} if generators is None else generators
    ac = cfg.params.actor_critic
    loss_cfg = actor_critic_loss_config(cfg)
    resolved = resolve_loss(loss_cfg)
    actor_critic = models.actor_critic
    state_spec = recurrent_state_spec(actor_critic.config.lstm_dim, device=device)
    trunk = trunk if trunk is not None else ActorCriticTrunk(actor_critic.model, write_values=False)
    actor = make_actor(trunk)
    loss = build_actor_critic_loss(actor_critic, loss_cfg)  # its own networks on the models' device
    targets = make_target_updater(loss, loss_cfg.target_ema_decay)
    own = [p for p in loss.parameters() if p.requires_grad
           and all(p is not q for q in actor_critic.model.parameters())]
    trained = torch.nn.ModuleList([actor_critic.model, loss]) if own else None
    horizon = int(ac.imagination_horizon)
    autocast_dtype = torch.bfloat16 if execution_of(cfg, device).imagination_bf16 else None
    env = ImaginationEnv(models.tokenizer, models.world_model, sample=True, policy_state_spec=state_spec,
                         autocast_dtype=autocast_dtype, compile_step=cfg.params.common.get("compile", False))
    with_target = resolved.name in (None, "reinforce")

    def dream(segments: TensorDictBase) -> TensorDictBase:
        return imagine(env, actor, actor_critic, context_of(segments), horizon, with_target=with_target)

    common = dict(trained=trained, after_update=targets.step if targets is not None else None, loss=MaskedLoss(loss))
    generator = generators["actor_critic/minibatches"] = torch.Generator().manual_seed(seed + 100)
    if resolved.mode == "on_policy":
        estimator = loss.value_estimator if uses_value_estimator(loss, resolved) else None

        def prepare(segments: TensorDictBase) -> TensorDictBase:
            data = dream(segments)
            if estimator is not None:
                with torch.no_grad():  # advantages once per imagined batch, from the critic before the updates
                    data = estimator(data)
            return data

        several = (resolved.epochs, resolved.num_minibatches) != (1, 1)  # else: one update per batch, grad_acc
        updates = (lambda data: minibatches(data, resolved.epochs, resolved.num_minibatches, generator)) \
            if several else None
        component = make_component(cfg, "actor_critic", actor_critic.model, store=store, counts=counts,
                                   device=device, seed=seed, prepare=prepare, updates=updates,
                                   generators=generators, **common)
    else:
        component = _off_policy_component(cfg, models, store, counts, device, seed, actor, state_spec, resolved,
                                          common, generators)
    return ActorCriticParts(component, trunk, dream, loss, env)


def _off_policy_component(cfg, models, store, counts, device, seed, actor, state_spec, resolved, common,
                          generators):
    """A stock ``Collector`` on an ``ImaginationEnv`` of fixed batch, reset at every batch from real
    segments (``context_fn``, with the burned-in policy state), into a stock replay buffer."""
    from torchrl.collectors import Collector
    from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer

    sample_segments, increment_counts = make_segment_source(cfg, "actor_critic", store, counts, device, seed,
                                                            generators)
    t, net = cfg.params.training.actor_critic, models.actor_critic.model
    rows, horizon = int(t.batch_num_samples), int(cfg.params.actor_critic.imagination_horizon)

    def context_fn() -> TensorDict:
        segments = sample_segments()
        increment_counts(segments)  # the Collector, not the trainer, draws these segments (on the CPU)
        context = context_of(to_device(segments, device))
        h, c = burn_in(net, context.get(keys.PIXELS)[:, :-1])
        return context.update({keys.RECURRENT_STATE_H: h, keys.RECURRENT_STATE_C: c})

    autocast_dtype = torch.bfloat16 if execution_of(cfg, device).imagination_bf16 else None
    env = ImaginationEnv(models.tokenizer, models.world_model, sample=True, policy_state_spec=state_spec,
                         batch_size=[rows], context_fn=context_fn, autocast_dtype=autocast_dtype,
                         compile_step=cfg.params.common.get("compile", False))
    env.set_seed(seed + 200)
    generators["actor_critic/imagination"] = env.core.generator
    buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(int(cfg.params.actor_critic.updates.replay_capacity), device=device),
                                    batch_size=int(cfg.params.actor_critic.updates.replay_batch_size))
    collector: list = []  # built at the first update: its construction resets the env, which needs data

    def sample() -> TensorDictBase:
        if not collector:
            collector.append(iter(Collector(env, actor, frames_per_batch=rows * horizon, total_frames=-1,
                                            reset_at_each_iter=True, device=device, trust_policy=True,
                                            auto_register_policy_transforms=False)))
        return next(collector[0])

    def updates(batch: TensorDictBase):
        mask = functional.mask_after_first_done(ends=batch.get(keys.NEXT_TERMINATED)[..., 0])
        buffer.extend(batch[mask].exclude("collector"))
        return (buffer.sample() for _ in range(resolved.num_minibatches))

    return make_component(cfg, "actor_critic", net, store=store, counts=counts, device=device, seed=seed,
                          source=(sample, lambda _: None), updates=updates, **common)


def make_model_components(cfg: DictConfig, models: DeltaIrisModels, store: EpisodeStore, counts: EpisodeCounts,
                          device: torch.device, seed: int, generators: Generators | None = None) -> list[Component]:
    """The tokenizer's and the world model's components (bf16 autocast, as the reference trains them);
    their samplers' generators go into ``generators`` (``make_segment_source``)."""
    bf16 = bool(cfg.params.training.get("bf16", True))
    tokenizer_loss = TokenizerLoss(models.tokenizer, models.configs.tokenizer_loss)
    world_model_loss = WorldModelLoss(models.world_model, models.tokenizer, models.configs.world_model_loss)
    return [make_component(cfg, "tokenizer", models.tokenizer, tokenizer_loss, store, counts, device, seed,
                           bf16=bf16, generators=generators),
            make_component(cfg, "world_model", models.world_model, world_model_loss, store, counts, device, seed,
                           bf16=bf16, generators=generators)]
