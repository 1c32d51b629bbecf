"""The shipped Hydra configs hold the reference's values and build the reference's models."""

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from torchrl_deltairis.reference import DeltaIrisModels, configs_from_reference

ROOT = Path(__file__).resolve().parents[1]


def _params(name: str) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=[f"params={name}", f"env={name}"])
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("name", ["crafter", "atari"])
def test_yaml_models_have_the_reference_parameter_counts(name):
    manifest = json.loads((ROOT / "tests" / "data" / f"{name}_full_manifest.json").read_text())
    num_actions = manifest["config"]["tokenizer"]["num_actions"]
    models = DeltaIrisModels(configs_from_reference(_params(name)["params"], num_actions=num_actions))
    counts = {part: sum(p.numel() for p in getattr(models, part).parameters())
              for part in ("tokenizer", "world_model")}
    counts["actor_critic.model"] = sum(p.numel() for p in models.actor_critic.model.parameters())
    assert counts == manifest["num_parameters"]


def test_schedules_are_the_references():
    crafter, atari = _params("crafter")["params"], _params("atari")["params"]
    c_tr, a_tr = crafter["training"], atari["training"]
    assert crafter["common"]["epochs"] == 1000 and atari["common"]["epochs"] == 600
    assert crafter["collection"]["train"]["num_envs"] == 16 and atari["collection"]["train"]["num_envs"] == 1
    assert crafter["collection"]["train"]["stop_after_epochs"] == 991
    assert atari["collection"]["train"]["stop_after_epochs"] == 491
    assert (crafter["collection"]["train"]["config"]["num_steps"], atari["collection"]["train"]["config"]["num_steps"]) \
        == (10_000, 200)
    assert (crafter["collection"]["train"]["config"]["num_steps_first_epoch"],
            atari["collection"]["train"]["config"]["num_steps_first_epoch"]) == (100_000, 2_000)
    assert [c_tr[k]["batch_num_samples"] for k in ("tokenizer", "world_model", "actor_critic")] == [32, 32, 86]
    assert [a_tr[k]["batch_num_samples"] for k in ("tokenizer", "world_model", "actor_critic")] == [16, 64, 64]
    assert [a_tr[k]["start_after_epochs"] for k in ("tokenizer", "world_model", "actor_critic")] == [5, 50, 75]
    assert [a_tr[k]["steps_per_epoch"] for k in ("tokenizer", "world_model", "actor_critic")] == [200, 120, 200]
    assert (c_tr["tokenizer"]["sequence_length"], a_tr["world_model"]["sequence_length"]) == (21, 26)
    assert [a_tr[k]["priority_alpha"] for k in ("tokenizer", "world_model", "actor_critic")] == [1, 1, 1]
    assert atari["tokenizer"]["max_codebook_updates_with_revival"] == 400
    assert atari["world_model"]["transformer_config"]["max_blocks"] == 26
    assert (crafter["evaluation"]["every"], atari["evaluation"]["every"]) == (50, 25)
    assert (atari["actor_critic"]["gamma"], atari["actor_critic"]["entropy_weight"]) == (0.995, 0.002)


def _compose(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return OmegaConf.to_container(compose("config", overrides=list(overrides)), resolve=True)["params"]


def _get(tree: dict, path: str):
    for part in path.split("."):
        tree = tree[part]
    return tree


ATARI_MODEL_VALUES = ("world_model.two_hot_rews", "world_model.latents_weight", "world_model.ends_weight",
                      "actor_critic.two_hot_rets", "actor_critic.gamma", "actor_critic.entropy_weight",
                      "tokenizer.decoder_config.latent_dim", "tokenizer.frame_cnn_config.latent_dim",
                      "training.tokenizer.weight_decay", "training.tokenizer.priority_alpha",
                      "training.world_model.priority_alpha", "training.actor_critic.priority_alpha")


def test_smoke_preset_follows_the_env_family():
    """`env=atari params=smoke` trains the Atari heads and objective at smoke sizes; Crafter keeps its own."""
    atari, crafter = _params("atari")["params"], _params("crafter")["params"]
    atari_smoke, crafter_smoke = _compose("env=atari", "params=smoke"), _compose("params=smoke")
    for path in ATARI_MODEL_VALUES:
        assert _get(atari_smoke, path) == _get(atari, path), path
        assert _get(crafter_smoke, path) == _get(crafter, path), path
    assert _get(atari, "world_model.two_hot_rews") != _get(crafter, "world_model.two_hot_rews")
    for smoke in (atari_smoke, crafter_smoke):  # the smoke budget itself is shared
        assert smoke["common"]["epochs"] == 3 and smoke["world_model"]["transformer_config"]["num_layers"] == 2
