"""Every check of a run's config that needs no env, model or file written, run before any work: each
bad value is a one-line error naming the key, the value and what was expected.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from torchrl_deltairis.build.components import actor_critic_loss_config, learning_rate_key
from torchrl_deltairis.build.models import execution_of
from torchrl_deltairis.checkpoint import read_torch_file
from torchrl_deltairis.data import COMPONENTS
from torchrl_deltairis.envs import env_config
from torchrl_deltairis.modules.models import COMPILE_MODES, valid_compile_mode
from torchrl_deltairis.objectives.loss_slot import resolve_loss
from torchrl_deltairis.reference import configs_from_reference


DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


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
