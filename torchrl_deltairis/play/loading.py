"""What the play tool shows: models and env from a run folder or from a reference-format checkpoint.

- A run folder holds ``config/trainer.yaml`` (the resolved Hydra config: ``params`` and ``env``) and
  ``checkpoints/last.pt`` (the models in the reference's key format); its episodes are under
  ``dataset/{train,test}``.
- A checkpoint file (``.pt``) is a reference-format state_dict (such as the published Crafter agent's
  ``last.pt``), or a parity fixture (``{"config", "state_dict", ...}``, it carries its own config).
  The model config comes from ``--params``: one of this project's ``configs/params/*.yaml`` (composed
  with Hydra, defaults included) or a reference-format params YAML (the reference's
  ``config/params/*.yaml``, whose ``${eval:'...'}`` arithmetic is evaluated here without ``eval``).
  ``--env`` names the game: ``crafter``, an Atari 100k game (``Breakout``, ``PongNoFrameskip-v4``) or a
  gymnasium id; Atari games get the reference's *test* preprocessing (1 no-op, no life loss, 108k frames).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from torchrl_deltairis.checkpoint import CheckpointError, read_torch_file
from torchrl_deltairis.envs import env_config, resolve_atari_id
from torchrl_deltairis.envs.atari import AtariConfig
from torchrl_deltairis.envs.crafter import CrafterConfig
from torchrl_deltairis.envs.generic import GymConfig, check_gym_id
from torchrl_deltairis.reference import DeltaIrisModels, configs_from_reference, load_reference_checkpoint

__all__ = ["PlayError", "Loaded", "load", "env_from_name", "read_params", "CONFIGS_DIR"]

CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"
ACTION_KEY = "world_model.act_emb.weight"  # [num_actions, embed_dim]: a checkpoint's action count
_SHOWN = 8  # lines of a long checkpoint-mismatch report that are printed


class PlayError(RuntimeError):
    """A user-facing problem (bad path, option or environment): printed as one message, exit code 2."""


@dataclass
class Loaded:
    """Everything the modes need: models on their device, the env config, its keymap name, folders."""

    models: DeltaIrisModels
    env: AtariConfig | CrafterConfig | GymConfig
    keymap: str  # "crafter", "atari/<id>" or "empty"
    run_dir: Path | None  # None for a checkpoint file
    media_dir: Path  # where clips recorded with "," go
    config: dict | None = None  # a run folder's resolved config (None for a checkpoint file)


def _num_actions(state_dict: Mapping[str, torch.Tensor], where: str) -> int:
    if ACTION_KEY not in state_dict:
        raise PlayError(f"{where} is not a Δ-IRIS checkpoint in the reference's format: "
                        f"it has no {ACTION_KEY!r}")
    return int(state_dict[ACTION_KEY].shape[0])


def _read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], Mapping | None]:
    """The state_dict of a checkpoint file, and the config a parity fixture carries (else None)."""
    try:
        state = read_torch_file(path, "the checkpoint")
    except CheckpointError as err:
        raise PlayError(str(err)) from None
    if not isinstance(state, Mapping):
        raise PlayError(f"{path} holds a {type(state).__name__}, expected a state_dict")
    if isinstance(state.get("state_dict"), Mapping):
        return dict(state["state_dict"]), state.get("config")
    return dict(state), None


def env_from_name(name: str) -> AtariConfig | CrafterConfig | GymConfig:
    """``crafter``, an Atari 100k game (test preprocessing) or a registered gymnasium id."""
    if name.lower() == "crafter":
        return CrafterConfig()
    try:
        return AtariConfig(id=resolve_atari_id(name), max_episode_steps=108_000, noop_max=1,
                           done_on_life_loss=False)
    except ValueError:
        gym_cfg = GymConfig(id=name)
    try:
        check_gym_id(gym_cfg)
    except ValueError as err:
        raise PlayError(f"--env {name!r} is not crafter, an Atari 100k game (Breakout, "
                        f"PongNoFrameskip-v4, ...) nor a registered gymnasium id ({err})") from None
    return gym_cfg


def _keymap_name(env: AtariConfig | CrafterConfig | GymConfig) -> str:
    if isinstance(env, CrafterConfig):
        return "crafter"
    return f"atari/{env.id}" if isinstance(env, AtariConfig) else "empty"


def _compose_project_params(path: Path, env: AtariConfig | CrafterConfig | GymConfig) -> dict[str, Any]:
    """``params`` of this project's Hydra tree (``configs/params/<name>.yaml``, its defaults applied)."""
    from hydra import compose, initialize_config_dir

    family = {CrafterConfig: "crafter", AtariConfig: "atari"}.get(type(env), "gym")
    with initialize_config_dir(config_dir=str(path.parent.parent.resolve()), version_base="1.3"):
        cfg = compose("config", overrides=[f"params={path.stem}", f"env={family}"])
    return OmegaConf.to_container(cfg.params, resolve=True)


def read_params(path: Path, env: AtariConfig | CrafterConfig | GymConfig) -> dict[str, Any]:
    """A params YAML as a plain dict: this project's (composed with Hydra) or the reference's."""
    if not path.is_file():
        raise PlayError(f"--params {str(path)!r} is not a file; expected configs/params/crafter.yaml, "
                        "configs/params/atari.yaml or a reference-format params YAML")
    if path.parent.name == "params" and (path.parent.parent / "config.yaml").is_file():
        return _compose_project_params(path, env)
    try:
        cfg = OmegaConf.create({"params": OmegaConf.load(path)})
        return OmegaConf.to_container(cfg.params, resolve=True)
    except Exception as err:
        raise PlayError(f"cannot read the params YAML {path}: {err}") from err


def _models_from(state_dict: Mapping[str, torch.Tensor], params: Mapping, where: str,
           device: torch.device) -> DeltaIrisModels:
    try:
        configs = configs_from_reference(params, num_actions=_num_actions(state_dict, where))
        return load_reference_checkpoint(state_dict, configs).to(device).eval()
    except (KeyError, ValueError) as err:
        lines = str(err).splitlines()
        more = [f"  ... and {len(lines) - _SHOWN} more lines"] if len(lines) > _SHOWN else []
        text = "\n".join([*lines[:_SHOWN], *more])
        raise PlayError(f"the weights of {where} do not fit their config (check --params / --env): "
                        f"{text}") from err


def load_run(run_dir: Path, device: torch.device) -> Loaded:
    """A run folder: its resolved config and ``checkpoints/last.pt``."""
    config, weights = run_dir / "config" / "trainer.yaml", run_dir / "checkpoints" / "last.pt"
    missing = [str(p.relative_to(run_dir)) for p in (config, weights) if not p.is_file()]
    if missing:
        raise PlayError(f"{run_dir} is not a run folder with a checkpoint: missing {', '.join(missing)} "
                        "(or pass a checkpoint file .pt with --params and --env)")
    cfg = OmegaConf.to_container(OmegaConf.load(config), resolve=True)
    state_dict, _ = _read_state_dict(weights)
    env = env_config(cfg["env"]["test"])
    models = _models_from(state_dict, cfg["params"], str(weights), device)
    return Loaded(models, env, str(cfg["env"].get("keymap") or _keymap_name(env)), run_dir, run_dir / "media", cfg)


def load_checkpoint_file(path: Path, params: Path | None, env_name: str | None,
                         device: torch.device) -> Loaded:
    """A reference-format checkpoint: its config from ``params`` (or the fixture's own), its env from
    ``env_name``."""
    state_dict, fixture_config = _read_state_dict(path)
    env = env_from_name(env_name or "crafter")
    if params is not None:
        config = read_params(params, env)
    elif fixture_config is not None:
        config = fixture_config
    else:
        name = "crafter.yaml" if isinstance(env, CrafterConfig) else "atari.yaml"
        config = read_params(CONFIGS_DIR / "params" / name, env)
    models = _models_from(state_dict, config, str(path), device)
    return Loaded(models, env, _keymap_name(env), None, path.resolve().parent / "media")


def load(path: Path, params: Path | None, env_name: str | None, device: torch.device) -> Loaded:
    """A run folder or a checkpoint file (see the module docstring)."""
    if path.is_dir():
        if params is not None or env_name is not None:
            raise PlayError("--params and --env describe a checkpoint file; a run folder has its own config "
                            f"({path / 'config' / 'trainer.yaml'})")
        return load_run(path, device)
    if path.is_file():
        return load_checkpoint_file(path, params, env_name, device)
    raise PlayError(f"{str(path)!r} does not exist; expected a run folder or a checkpoint file (.pt)")
