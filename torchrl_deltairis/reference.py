"""Interoperability with the reference Δ-IRIS code (vmicheli/delta-iris): configs and checkpoints.

- :func:`configs_from_reference` turns the reference's config dict (its ``config/params/*.yaml``
  groups ``tokenizer``, ``world_model``, ``actor_critic``, as stored in the parity fixtures and the
  manifests, or a run's ``params``) into this project's typed configs, every dataclass field reachable.
  The models' container :class:`~torchrl_deltairis.modules.models.DeltaIrisModels` lives beside the
  models and is re-exported here.
- :func:`load_reference_checkpoint` reads a state_dict saved by the reference (e.g. the published
  Crafter agent ``checkpoints/last.pt``: keys ``tokenizer.*``, ``world_model.*``,
  ``actor_critic.model.*``, ``actor_critic.target_model.*``, buffers included) and returns
  :class:`DeltaIrisModels` holding those weights. It is strict: a missing, unexpected or mis-shaped
  key raises :class:`ReferenceCheckpointError` naming it.

Our modules mirror the reference's attribute names, so its keys are ours: :func:`convert_reference_state_dict`
checks them (every key, shape and dtype kind) and is the one place to map them if a name ever diverges.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
import torch.nn as nn

from torchrl_deltairis.checked import check_keys, convert
from torchrl_deltairis.modules.actor_critic import ActorCriticConfig
from torchrl_deltairis.modules.convnet import FrameCnnConfig
from torchrl_deltairis.modules.models import DeltaIrisModels
from torchrl_deltairis.modules.tokenizer import TokenizerConfig
from torchrl_deltairis.modules.transformer import TransformerConfig
from torchrl_deltairis.modules.world_model import WorldModelConfig
from torchrl_deltairis.objectives.tokenizer_loss import TokenizerLossConfig
from torchrl_deltairis.objectives.world_model_loss import WorldModelLossConfig

__all__ = [
    "ModelConfigs", "DeltaIrisModels", "ReferenceCheckpointError", "configs_from_reference",
    "convert_reference_state_dict", "load_reference_checkpoint", "to_reference_state_dict",
]


class ReferenceCheckpointError(ValueError):
    """A reference state_dict does not fit the models built from the given config."""


_META = frozenset({"_target_", "num_actions"})  # class paths (ignored) and the env-given action count


@dataclass
class ModelConfigs:
    """Our configs for the three models and the two model losses, plus the actor-critic's training
    hyperparameters (what :func:`configs_from_reference` reads from a run's ``params``)."""

    tokenizer: TokenizerConfig
    world_model: WorldModelConfig
    actor_critic: ActorCriticConfig
    tokenizer_loss: TokenizerLossConfig = field(default_factory=TokenizerLossConfig)
    world_model_loss: WorldModelLossConfig = field(default_factory=WorldModelLossConfig)
    actor_critic_training: dict[str, Any] = field(default_factory=dict)
    """burn_in_length, imagination_horizon, gamma, lambda_, entropy_weight"""

    def with_actions(self, num_actions: int) -> ModelConfigs:
        """The same configs for an env of ``num_actions`` actions (the three models' action count)."""
        return replace(self, tokenizer=replace(self.tokenizer, num_actions=num_actions),
                       world_model=replace(self.world_model, num_actions=num_actions),
                       actor_critic=replace(self.actor_critic, num_actions=num_actions))


def _flag(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where}={value!r}; expected true or false")
    return value


def _fields_from(cls, node: Mapping[str, Any], where: str, *, skip: Iterable[str] = ()) -> dict[str, Any]:
    """The fields of dataclass ``cls`` that ``node`` sets, typed and checked against the ranges their
    declarations state (``checked.setting``), nested configs excepted (``skip``)."""
    hints = typing.get_type_hints(cls)
    return {f.name: convert(f, hints[f.name], node[f.name], f"{where}.{f.name}")
            for f in fields(cls) if f.name in node and f.name not in skip}


def _check_keys(node: Mapping[str, Any], where: str, allowed: Iterable[str]) -> None:
    check_keys(node, where, allowed, ignore=_META)


def _cnn(d: Mapping[str, Any], where: str) -> FrameCnnConfig:
    _check_keys(d, where, (f.name for f in fields(FrameCnnConfig)))
    for key in ("image_channels", "latent_dim", "num_channels", "mult", "down"):
        if key not in d:
            raise KeyError(key)
    return FrameCnnConfig(**_fields_from(FrameCnnConfig, d, where))


def configs_from_reference(config: Mapping[str, Any], *, num_actions: int | None = None,
                           prefix: str = "params") -> ModelConfigs:
    """Builds our configs from the reference's ``{tokenizer, world_model, actor_critic}`` config dict
    (a run's ``params``), every field of every config dataclass reachable:

    - ``tokenizer``: the fields of ``TokenizerConfig`` (e.g. the quantizer's ``codebook_ema_decay``),
      its CNN nodes (``FrameCnnConfig``), and ``loss``: the fields of ``TokenizerLossConfig``;
    - ``world_model``: ``WorldModelConfig`` (``two_hot_rews`` picks the reward head), its
      ``transformer_config`` (``TransformerConfig``), and the fields of ``WorldModelLossConfig``;
    - ``actor_critic``: the imagination's and the loss slot's fields (``ActorCriticLossConfig``) and
      ``model`` (or, as in the parity fixtures, the same level): ``ActorCriticConfig``'s
      ``frame_encoder_config``, ``lstm_dim`` (the reference hard-codes 512), ``num_value_buckets``,
      ``zero_init_critic``; ``two_hot_rets`` picks the value head.

    An unknown key, or a value of the wrong type, is a one-line ``ValueError`` naming it (under
    ``prefix``). ``num_actions`` overrides (or supplies) the action count of all three models.
    """
    from torchrl_deltairis.objectives.loss_slot import ActorCriticLossConfig

    try:
        tok, wm, ac = config["tokenizer"], config["world_model"], config["actor_critic"]
        w_tok, w_wm, w_ac = f"{prefix}.tokenizer", f"{prefix}.world_model", f"{prefix}.actor_critic"
        model_node, w_model = ac, w_ac
        if "model" in ac:  # the reference's YAML nests the network under actor_critic.model; ours may set
            # its fields (lstm_dim) at actor_critic's level too
            model_node = {**{k: v for k, v in ac.items() if k != "model"}, **ac["model"]}
            w_model = f"{w_ac}.model"
        tc = wm["transformer_config"]
        actions = {name: int(num_actions if num_actions is not None else d["num_actions"])
                   for name, d in (("tokenizer", tok), ("world_model", wm), ("actor_critic", model_node))}
        cnn_keys = ("encoder_config", "decoder_config", "frame_cnn_config")
        _check_keys(tok, w_tok, [*(f.name for f in fields(TokenizerConfig)), "loss"])
        for key in ("image_channels", "image_size", "num_tokens", "decoder_act_channels", "codebook_size",
                    "codebook_dim", "max_codebook_updates_with_revival"):
            if key not in tok:
                raise KeyError(key)
        tokenizer = TokenizerConfig(
            num_actions=actions["tokenizer"], **_fields_from(TokenizerConfig, tok, w_tok, skip=(*cnn_keys, "num_actions")),
            **{key: _cnn(tok[key], f"{w_tok}.{key}") for key in cnn_keys})
        tok_loss = tok.get("loss") or {}
        _check_keys(tok_loss, f"{w_tok}.loss", (f.name for f in fields(TokenizerLossConfig)))
        tokenizer_loss = TokenizerLossConfig(**_fields_from(TokenizerLossConfig, tok_loss, f"{w_tok}.loss"))
        _check_keys(tc, f"{w_wm}.transformer_config", (f.name for f in fields(TransformerConfig)))
        for key in ("tokens_per_block", "max_blocks", "num_layers", "num_heads", "embed_dim", "attention"):
            if key not in tc:
                raise KeyError(key)
        transformer = TransformerConfig(**_fields_from(TransformerConfig, tc, f"{w_wm}.transformer_config"))
        wm_fields = [f.name for f in fields(WorldModelConfig)]
        _check_keys(wm, w_wm, [*wm_fields, *(f.name for f in fields(WorldModelLossConfig)), "two_hot_rews"])
        for key in ("latent_vocab_size", "image_channels", "image_size", "two_hot_rews"):
            if key not in wm:
                raise KeyError(key)
        world_model = WorldModelConfig(
            num_actions=actions["world_model"],
            reward_head="two_hot" if _flag(f"{w_wm}.two_hot_rews", wm["two_hot_rews"]) else "sign",
            transformer_config=transformer, frame_cnn_config=_cnn(wm["frame_cnn_config"], f"{w_wm}.frame_cnn_config"),
            **_fields_from(WorldModelConfig, wm, w_wm, skip=("num_actions", "reward_head", "transformer_config",
                                                              "frame_cnn_config")))
        world_model_loss = WorldModelLossConfig(**_fields_from(WorldModelLossConfig, wm, w_wm))
        net_fields = ("frame_encoder_config", "lstm_dim", "num_value_buckets", "zero_init_critic", "two_hot_rets")
        training_names = ("burn_in_length", "imagination_horizon", "gamma", "lambda_", "entropy_weight")
        loss_fields = [f.name for f in fields(ActorCriticLossConfig)]
        _check_keys(ac, w_ac, [*net_fields, *training_names, *loss_fields, "model"])
        if "model" in ac:
            _check_keys(ac["model"], w_model, net_fields)
        two_hot_rets = model_node["two_hot_rets"]
        frame_encoder = _cnn(model_node["frame_encoder_config"], f"{w_model}.frame_encoder_config")
        res = tokenizer.image_size // 2 ** frame_encoder.num_downsamplings
        actor_critic = ActorCriticConfig(
            num_actions=actions["actor_critic"], frame_encoder_config=frame_encoder,
            image_size=tokenizer.image_size, lstm_input_dim=res * res * frame_encoder.latent_dim,
            value_head="two_hot" if _flag(f"{w_model}.two_hot_rets", two_hot_rets) else "scalar",
            **{"lstm_dim": 512, **_fields_from(ActorCriticConfig, model_node, w_model,
                                               skip=("num_actions", "frame_encoder_config", "image_size",
                                                     "lstm_input_dim", "value_head"))})
        training = {name: ac[name] for name in training_names if name in ac}
    except KeyError as err:
        raise KeyError(f"reference config lacks the field {err.args[0]!r}") from err
    return ModelConfigs(tokenizer, world_model, actor_critic, tokenizer_loss, world_model_loss, training)


def _kind(t: torch.Tensor) -> str:
    return "bool" if t.dtype == torch.bool else "float" if t.is_floating_point() else "integer"


def convert_reference_state_dict(state_dict: Mapping[str, torch.Tensor],
                                 models: nn.Module) -> dict[str, torch.Tensor]:
    """Maps a reference state_dict onto ``models``' keys, checking every key, shape and dtype kind.

    Raises:
        ReferenceCheckpointError: naming every missing, unexpected or mis-shaped key.
    """
    ours = models.state_dict()
    converted, problems = {}, []
    for ref_key, value in state_dict.items():
        key = ref_key  # our modules mirror the reference's attribute names
        if key not in ours:
            problems.append(f"unexpected key {ref_key!r} (shape {tuple(value.shape)})")
        elif not isinstance(value, torch.Tensor):
            problems.append(f"key {ref_key!r} holds a {type(value).__name__}, expected a tensor")
        elif value.shape != ours[key].shape:
            problems.append(f"key {ref_key!r} has shape {tuple(value.shape)}, "
                            f"expected {tuple(ours[key].shape)}")
        elif _kind(value) != _kind(ours[key]):
            problems.append(f"key {ref_key!r} has dtype {value.dtype}, expected {ours[key].dtype}")
        else:
            converted[key] = value
    problems += [f"missing key {k!r} (shape {tuple(v.shape)})"
                 for k, v in ours.items() if k not in state_dict]
    if problems:
        raise ReferenceCheckpointError(f"{len(problems)} problem(s) with the reference checkpoint:\n  "
                                       + "\n  ".join(problems))
    return converted


def to_reference_state_dict(models: nn.Module) -> dict[str, torch.Tensor]:
    """Our models' state, keyed as the reference saves it (the inverse of the conversion)."""
    return dict(models.state_dict())


def load_reference_checkpoint(path_or_state_dict: str | os.PathLike | Mapping[str, torch.Tensor],
                              config: ModelConfigs | Mapping[str, Any], *,
                              map_location: str | torch.device = "cpu") -> DeltaIrisModels:
    """Builds :class:`DeltaIrisModels` from ``config`` and loads a reference-format state_dict into it.

    Args:
        path_or_state_dict: a path to a ``.pt`` file (read with ``torch.load(weights_only=True)``) or
            a state_dict. A dict with a ``"state_dict"`` entry (a parity fixture) is unwrapped.
        config: :class:`ModelConfigs`, or the reference's config dict.
        map_location: where to load the tensors.
    """
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        from torchrl_deltairis.checkpoint import read_torch_file

        state = read_torch_file(path_or_state_dict, "the reference checkpoint")
    else:
        state = path_or_state_dict
    if not isinstance(state, Mapping):
        raise ReferenceCheckpointError(f"expected a state_dict (a mapping), got {type(state).__name__}")
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    configs = config if isinstance(config, ModelConfigs) else configs_from_reference(config)
    models = DeltaIrisModels(configs)
    models.load_state_dict(convert_reference_state_dict(state, models), strict=True)
    return models.to(map_location)
