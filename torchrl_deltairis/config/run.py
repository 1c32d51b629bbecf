"""A run's config, typed: the Hydra tree (``configs/config.yaml``, an ``env`` and a ``params`` preset)
parsed once, before any work, into :class:`RunConfig`. Every key is checked where its field is
declared (type, range, choices: :func:`~torchrl_deltairis.checked.setting`), an unknown key is an
error, and the values that depend on each other (frame sizes, the world model's context, the loss's
update scheme) are checked together. Every error is one line naming the key, the value and what was
expected. The rest of the run receives these typed configs, never the raw tree::

    run = RunConfig.from_hydra(cfg)       # cfg: Hydra's DictConfig (or the same as a plain dict)
    run.training.actor_critic.batch_num_samples, run.models.world_model.transformer_config.max_blocks

``params.tokenizer``, ``params.world_model`` and the network of ``params.actor_critic`` become
:class:`~torchrl_deltairis.reference.ModelConfigs` (``reference.configs_from_reference``, the reference's
layout); the loss fields of ``params.actor_critic`` the loss slot's
:class:`~torchrl_deltairis.objectives.loss_slot.ActorCriticLossConfig`; ``env.train`` / ``env.test`` the
env family's typed config (``envs.env_config``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from torchrl_deltairis.checked import check_keys, describe, parse
from torchrl_deltairis.config.sections import (
    CollectionConfig,
    CommonConfig,
    EvaluationConfig,
    ImaginationConfig,
    InitializationConfig,
    TrainingConfig,
)
from torchrl_deltairis.envs import EnvConfig, env_config
from torchrl_deltairis.modules.models import Execution, resolve_execution
from torchrl_deltairis.objectives.loss_slot import ActorCriticLossConfig
from torchrl_deltairis.reference import ModelConfigs, configs_from_reference

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


_IMAGINATION_FIELDS = tuple(f.name for f in dataclasses.fields(ImaginationConfig))
_PARAMS = ("common", "initialization", "collection", "training", "evaluation", "tokenizer", "world_model",
           "actor_critic")


@dataclass(frozen=True)
class RunConfig:
    """The whole run, typed and checked; :meth:`from_hydra` builds it."""

    common: CommonConfig
    initialization: InitializationConfig
    collection: CollectionConfig
    training: TrainingConfig
    evaluation: EvaluationConfig
    imagination: ImaginationConfig
    actor_critic_loss: ActorCriticLossConfig  # the loss slot (params.actor_critic's loss fields), resolved once
    models: ModelConfigs  # num_actions 0 until the env tells: ``models.with_actions(n)``
    env_train: EnvConfig
    env_test: EnvConfig
    device: torch.device  # params.common.device, resolved
    execution: Execution  # memory format, convolution chunks, bf16 imagination, for this device
    static_dataset: Path | None  # params.collection.path_to_static_dataset, resolved and checked
    resolved: dict[str, Any]  # the whole tree, interpolations resolved (saved in the run folder and checkpoints)

    @property
    def seed(self) -> int:
        return self.common.seed

    @property
    def wandb(self) -> dict:
        return dict(self.resolved.get("wandb") or {})

    @property
    def tensorboard(self) -> bool:
        return bool(self.resolved.get("tensorboard", False))

    @classmethod
    def from_hydra(cls, cfg: Any) -> RunConfig:
        """Parses and checks the whole tree (a Hydra ``DictConfig`` or a plain mapping)."""
        from omegaconf import DictConfig, OmegaConf

        tree = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
        params = tree["params"]
        check_keys(params, "params", _PARAMS)
        ac = params["actor_critic"]
        # the sources of interpolated values first, so that an error names the key that was set
        imagination = parse(ImaginationConfig, {k: ac[k] for k in _IMAGINATION_FIELDS if k in ac},
                            "params.actor_critic")
        loss = ActorCriticLossConfig.from_config(ac)
        common = parse(CommonConfig, params["common"], "params.common")
        device = resolve_device(common.device)
        training = parse(TrainingConfig, params["training"], "params.training")
        env_train, env_test = env_config(tree["env"]["train"], "env.train"), env_config(tree["env"]["test"], "env.test")
        _check_frame_sizes(env_train, env_test, params)  # before the models, whose shapes follow from the sizes
        run = cls(
            common=common, device=device, training=training, imagination=imagination, actor_critic_loss=loss,
            initialization=parse(InitializationConfig, params.get("initialization") or {}, "params.initialization"),
            collection=_collection(params["collection"]),
            evaluation=parse(EvaluationConfig, params["evaluation"], "params.evaluation"),
            models=configs_from_reference(params, num_actions=0),
            env_train=env_train, env_test=env_test,
            execution=resolve_execution(device, common.memory_format, common.conv_batch_chunk,
                                        training.imagination_bf16),
            static_dataset=_static_dataset(params["collection"].get("path_to_static_dataset")), resolved=tree)
        run._check_together()
        return run

    def _check_together(self) -> None:
        loss = self.actor_critic_loss.resolved
        several = loss.mode == "off_policy" or (loss.epochs, loss.num_minibatches) != (1, 1)
        grad_acc = self.training.actor_critic.grad_acc_steps
        if several and grad_acc != 1:
            raise ValueError(f"params.training.actor_critic.grad_acc_steps={grad_acc} with several updates per "
                             "imagined batch (params.actor_critic.updates); expected 1")
        self._check_context()

    def _check_context(self) -> None:
        """The world model's context (``max_blocks`` frames) must hold its training sequences, the
        actor-critic's context segment (burned in at once) and the imagination that follows it (the
        reference flushed the context there without a word; the imagination env refuses)."""
        max_blocks = self.models.world_model.transformer_config.max_blocks
        key = "params.world_model.transformer_config.max_blocks"
        t = self.training
        for what, blocks in (("params.training.world_model.sequence_length", t.world_model.sequence_length),
                             ("params.training.actor_critic.sequence_length", t.actor_critic.sequence_length)):
            if blocks > max_blocks:
                raise ValueError(f"{key}={max_blocks}; expected >= {what} = {blocks} (the world model's context, "
                                 "in frames)")
        imagined = t.actor_critic.sequence_length + self.imagination.imagination_horizon - 1
        if imagined > max_blocks:
            raise ValueError(f"{key}={max_blocks}; expected >= params.training.actor_critic.sequence_length + "
                             f"params.actor_critic.imagination_horizon - 1 = {imagined} (the context frames and "
                             "the imagined steps)")


def _check_frame_sizes(env_train: EnvConfig, env_test: EnvConfig, params: dict) -> None:
    for split, env in (("train", env_train), ("test", env_test)):
        for model in ("tokenizer", "world_model"):
            image_size = params[model].get("image_size")
            if env.size != image_size:
                raise ValueError(f"env.{split}.size={env.size} but params.{model}.image_size={image_size}; "
                                 "expected the env's frames at the models' size (set one to the other)")


def _collection(node: dict) -> CollectionConfig:
    collection = parse(CollectionConfig, node, "params.collection")
    required = {"train": ("steps_per_batch", "stop_after_epochs", "config.num_steps", "config.num_steps_first_epoch"),
                "test": ("config.num_episodes",)}
    for split, names in required.items():
        for name in names:
            holder = getattr(collection, split)
            for part in name.split("."):
                holder = getattr(holder, part)
            if holder is None:
                raise ValueError(f"params.collection.{split}.{name} is missing; expected an integer")
    return collection


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


def _static_dataset(path: str | None) -> Path | None:
    """A folder with ``train/`` and ``test/`` episode stores (another run's ``dataset/``), or None."""
    if not path:
        return None
    path = Path(path).expanduser().resolve()
    for split in ("train", "test"):
        if not (path / split / "commit.json").exists():
            raise ValueError(f"params.collection.path_to_static_dataset={str(path)!r} has no episode store at "
                             f"{path / split}; expected a run's dataset/ folder holding train/ and test/ stores")
    return path


DOCUMENTED = (("params.common", CommonConfig), ("params.initialization", InitializationConfig),
              ("params.collection", CollectionConfig), ("params.training", TrainingConfig),
              ("params.evaluation", EvaluationConfig), ("params.actor_critic", ImaginationConfig),
              ("params.actor_critic", ActorCriticLossConfig))


def reference_table() -> str:
    """Every key of the run's tree parsed here (the models' own keys aside), as a Markdown table: its
    type, default, range and meaning, from the declarations (``docs/config.md`` is this table)."""
    lines = ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    for where, cls in DOCUMENTED:
        for row in describe(cls, where):
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines) + "\n"
