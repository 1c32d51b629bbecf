"""Interoperability with the reference Δ-IRIS code (vmicheli/delta-iris): configs and checkpoints.

- :func:`configs_from_reference` turns the reference's config dict (its ``config/params/*.yaml``
  groups ``tokenizer``, ``world_model``, ``actor_critic``, as stored in the parity fixtures and the
  manifests) into this project's typed configs.
- :func:`load_reference_checkpoint` reads a state_dict saved by the reference (e.g. the published
  Crafter agent ``checkpoints/last.pt``: keys ``tokenizer.*``, ``world_model.*``,
  ``actor_critic.model.*``, ``actor_critic.target_model.*``, buffers included) and returns
  :class:`DeltaIrisModels` holding those weights. It is strict: a missing, unexpected or mis-shaped
  key raises :class:`ReferenceCheckpointError` naming it.

Our modules mirror the reference's attribute names, so the key mapping is the identity; it still goes
through :func:`convert_reference_state_dict`, the one place to change if a name ever diverges.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from torchrl_deltairis.modules.actor_critic import ActorCriticConfig, ActorCriticWithTarget
from torchrl_deltairis.modules.convnet import FrameCnnConfig
from torchrl_deltairis.modules.tokenizer import Tokenizer, TokenizerConfig
from torchrl_deltairis.modules.transformer import TransformerConfig
from torchrl_deltairis.modules.world_model import WorldModel, WorldModelConfig
from torchrl_deltairis.objectives.tokenizer_loss import TokenizerLossConfig
from torchrl_deltairis.objectives.world_model_loss import WorldModelLossConfig

__all__ = [
    "ReferenceConfigs", "DeltaIrisModels", "ReferenceCheckpointError", "configs_from_reference",
    "convert_reference_state_dict", "load_reference_checkpoint", "to_reference_state_dict",
]


class ReferenceCheckpointError(ValueError):
    """A reference state_dict does not fit the models built from the given config."""


@dataclass
class ReferenceConfigs:
    """Our configs for the three models and two losses, plus the actor-critic training hyperparameters."""

    tokenizer: TokenizerConfig
    world_model: WorldModelConfig
    actor_critic: ActorCriticConfig
    tokenizer_loss: TokenizerLossConfig = field(default_factory=TokenizerLossConfig)
    world_model_loss: WorldModelLossConfig = field(default_factory=WorldModelLossConfig)
    actor_critic_training: dict[str, Any] = field(default_factory=dict)
    """burn_in_length, imagination_horizon, gamma, lambda_, entropy_weight (for the imagination issue)"""


def _cnn(d: Mapping[str, Any]) -> FrameCnnConfig:
    return FrameCnnConfig(image_channels=int(d["image_channels"]), latent_dim=int(d["latent_dim"]),
                          num_channels=int(d["num_channels"]), mult=[int(m) for m in d["mult"]],
                          down=[int(x) for x in d["down"]], num_groups=int(d.get("num_groups", 32)))


def configs_from_reference(config: Mapping[str, Any], *, num_actions: int | None = None) -> ReferenceConfigs:
    """Builds our configs from the reference's ``{tokenizer, world_model, actor_critic}`` config dict.

    ``num_actions`` overrides (or supplies, when the dict lacks it) the action count of all three models.
    Both layouts of the actor-critic are read: the fixtures' flat one and the YAML's ``actor_critic.model``.
    The reference hard-codes the LSTM at 512 hidden units; ``actor_critic.lstm_dim`` overrides that.
    """
    try:
        tok, wm, ac = config["tokenizer"], config["world_model"], config["actor_critic"]
        if "model" in ac:  # the reference's YAML nests the network under actor_critic.model
            ac = {**{k: v for k, v in ac.items() if k != "model"}, **ac["model"]}
        tc = wm["transformer_config"]
        actions = {name: int(num_actions if num_actions is not None else d["num_actions"])
                   for name, d in (("tokenizer", tok), ("world_model", wm), ("actor_critic", ac))}
        tokenizer = TokenizerConfig(
            num_actions=actions["tokenizer"], image_channels=int(tok["image_channels"]),
            image_size=int(tok["image_size"]), num_tokens=int(tok["num_tokens"]),
            decoder_act_channels=int(tok["decoder_act_channels"]), codebook_size=int(tok["codebook_size"]),
            codebook_dim=int(tok["codebook_dim"]),
            max_codebook_updates_with_revival=tok["max_codebook_updates_with_revival"],
            encoder_config=_cnn(tok["encoder_config"]), decoder_config=_cnn(tok["decoder_config"]),
            frame_cnn_config=_cnn(tok["frame_cnn_config"]))
        transformer = TransformerConfig(
            tokens_per_block=int(tc["tokens_per_block"]), max_blocks=int(tc["max_blocks"]),
            num_layers=int(tc["num_layers"]), num_heads=int(tc["num_heads"]), embed_dim=int(tc["embed_dim"]),
            attention=tc["attention"], embed_pdrop=float(tc["embed_pdrop"]),
            resid_pdrop=float(tc["resid_pdrop"]), attn_pdrop=float(tc["attn_pdrop"]))
        world_model = WorldModelConfig(
            num_actions=actions["world_model"], latent_vocab_size=int(wm["latent_vocab_size"]),
            image_channels=int(wm["image_channels"]), image_size=int(wm["image_size"]),
            reward_head="two_hot" if wm["two_hot_rews"] else "sign", transformer_config=transformer,
            frame_cnn_config=_cnn(wm["frame_cnn_config"]))
        frame_encoder = _cnn(ac["frame_encoder_config"])
        res = int(tok["image_size"]) // 2 ** frame_encoder.num_downsamplings
        actor_critic = ActorCriticConfig(
            num_actions=actions["actor_critic"], frame_encoder_config=frame_encoder,
            image_size=int(tok["image_size"]), lstm_input_dim=res * res * frame_encoder.latent_dim,
            lstm_dim=int(ac.get("lstm_dim", 512)),
            value_head="two_hot" if ac["two_hot_rets"] else "scalar")
        world_model_loss = WorldModelLossConfig(latents_weight=float(wm["latents_weight"]),
                                                rewards_weight=float(wm["rewards_weight"]),
                                                ends_weight=float(wm["ends_weight"]))
        names = ("burn_in_length", "imagination_horizon", "gamma", "lambda_", "entropy_weight")
        training = {name: ac[name] for name in names if name in ac}
    except KeyError as err:
        raise KeyError(f"reference config lacks the field {err.args[0]!r}") from err
    return ReferenceConfigs(tokenizer, world_model, actor_critic, TokenizerLossConfig(), world_model_loss,
                            training)


class DeltaIrisModels(nn.Module):
    """The three Δ-IRIS networks; state-dict keys are those of the reference's ``Agent``."""

    def __init__(self, configs: ReferenceConfigs) -> None:
        super().__init__()
        self.configs = configs
        self.tokenizer = Tokenizer(configs.tokenizer)
        self.world_model = WorldModel(configs.world_model)
        self.actor_critic = ActorCriticWithTarget(configs.actor_critic)


def _reference_to_ours(key: str) -> str:
    """Our state-dict key for a reference key (identity: our modules mirror the reference's names)."""
    return key


def _ours_to_reference(key: str) -> str:
    return key


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
        key = _reference_to_ours(ref_key)
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
    mapped = {_reference_to_ours(k) for k in state_dict}
    problems += [f"missing key {_ours_to_reference(k)!r} (shape {tuple(v.shape)})"
                 for k, v in ours.items() if k not in mapped]
    if problems:
        raise ReferenceCheckpointError(f"{len(problems)} problem(s) with the reference checkpoint:\n  "
                                       + "\n  ".join(problems))
    return converted


def to_reference_state_dict(models: nn.Module) -> dict[str, torch.Tensor]:
    """Our models' state, keyed as the reference saves it (the inverse of the conversion)."""
    return {_ours_to_reference(k): v for k, v in models.state_dict().items()}


def load_reference_checkpoint(path_or_state_dict: str | os.PathLike | Mapping[str, torch.Tensor],
                              config: ReferenceConfigs | Mapping[str, Any], *,
                              map_location: str | torch.device = "cpu") -> DeltaIrisModels:
    """Builds :class:`DeltaIrisModels` from ``config`` and loads a reference-format state_dict into it.

    Args:
        path_or_state_dict: a path to a ``.pt`` file (read with ``torch.load(weights_only=True)``) or
            a state_dict. A dict with a ``"state_dict"`` entry (a parity fixture) is unwrapped.
        config: :class:`ReferenceConfigs`, or the reference's config dict.
        map_location: where to load the tensors.
    """
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        state = torch.load(path_or_state_dict, map_location=map_location, weights_only=True)
    else:
        state = path_or_state_dict
    if not isinstance(state, Mapping):
        raise ReferenceCheckpointError(f"expected a state_dict (a mapping), got {type(state).__name__}")
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    configs = config if isinstance(config, ReferenceConfigs) else configs_from_reference(config)
    models = DeltaIrisModels(configs)
    models.load_state_dict(convert_reference_state_dict(state, models), strict=True)
    return models
