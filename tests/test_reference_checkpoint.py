"""Reference-format checkpoints: the full-size manifests, round trips and strict errors."""

import json
from pathlib import Path

import pytest
import torch

from torchrl_deltairis.reference import (
    DeltaIrisModels, ReferenceCheckpointError, configs_from_reference, convert_reference_state_dict,
    load_reference_checkpoint, to_reference_state_dict,
)

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def crafter_fixture():
    return torch.load(DATA / "crafter_small.pt", weights_only=True)


@pytest.mark.parametrize("variant", ["crafter", "atari"])
def test_manifest_parameter_counts_and_keys(variant):
    manifest = json.loads((DATA / f"{variant}_full_manifest.json").read_text())
    models = DeltaIrisModels(configs_from_reference(manifest["config"]))
    counts = {name: sum(p.numel() for p in module.parameters()) for name, module in
              (("tokenizer", models.tokenizer), ("world_model", models.world_model),
               ("actor_critic.model", models.actor_critic.model))}
    assert counts == manifest["num_parameters"]
    # A state_dict with exactly the manifest's keys and shapes converts without a complaint.
    ours = models.state_dict()
    dtypes = {k: ours[k].dtype if k in ours else torch.float32 for k in manifest["state_dict_shapes"]}
    fake = {k: torch.zeros(shape, dtype=dtypes[k]) for k, shape in manifest["state_dict_shapes"].items()}
    converted = convert_reference_state_dict(fake, models)
    assert {k: list(v.shape) for k, v in converted.items()} == manifest["state_dict_shapes"]


def test_full_size_configs_match_the_reference_hard_coded_values():
    manifest = json.loads((DATA / "crafter_full_manifest.json").read_text())
    configs = configs_from_reference(manifest["config"])
    assert (configs.actor_critic.lstm_input_dim, configs.actor_critic.lstm_dim) == (1024, 512)
    assert configs.world_model.reward_head == "two_hot" and configs.actor_critic.value_head == "two_hot"
    atari = configs_from_reference(json.loads((DATA / "atari_full_manifest.json").read_text())["config"])
    assert atari.world_model.reward_head == "sign" and atari.actor_critic.value_head == "scalar"
    assert (atari.world_model_loss.latents_weight, atari.world_model_loss.ends_weight) == (0.1, 0.1)


def test_fixture_state_dict_round_trip(crafter_fixture, tmp_path):
    path = tmp_path / "last.pt"
    torch.save(crafter_fixture["state_dict"], path)
    models = load_reference_checkpoint(path, crafter_fixture["config"])
    exported = to_reference_state_dict(models)
    assert exported.keys() == crafter_fixture["state_dict"].keys()
    for key, value in crafter_fixture["state_dict"].items():
        assert torch.equal(exported[key], value), key
    assert models.configs.actor_critic.lstm_dim == 64


@pytest.mark.parametrize("corrupt, message", [
    (lambda sd: sd.pop("world_model.head_ends.head_module.2.bias"),
     "missing key 'world_model.head_ends.head_module.2.bias'"),
    (lambda sd: sd.__setitem__("world_model.extra.weight", torch.zeros(2)),
     "unexpected key 'world_model.extra.weight'"),
    (lambda sd: sd.__setitem__("tokenizer.quantizer.codebook", torch.zeros(63, 16)),
     r"key 'tokenizer.quantizer.codebook' has shape \(63, 16\), expected \(64, 16\)"),
    (lambda sd: sd.__setitem__("actor_critic.target_model.lstm.weight_hh", torch.zeros(256, 65)),
     r"'actor_critic.target_model.lstm.weight_hh' has shape \(256, 65\), expected \(256, 64\)"),
    (lambda sd: sd.__setitem__("world_model.transformer.blocks.0.sa.mask", torch.zeros(48, 48)),
     "'world_model.transformer.blocks.0.sa.mask' has dtype torch.float32, expected torch.bool"),
])
def test_strict_errors_name_the_key(crafter_fixture, corrupt, message):
    state = dict(crafter_fixture["state_dict"])
    corrupt(state)
    with pytest.raises(ReferenceCheckpointError, match=message):
        load_reference_checkpoint(state, crafter_fixture["config"])


def test_config_errors_name_the_field(crafter_fixture):
    config = json.loads(json.dumps(crafter_fixture["config"]))
    del config["world_model"]["transformer_config"]["num_heads"]
    with pytest.raises(KeyError, match="num_heads"):
        configs_from_reference(config)
    with pytest.raises(ReferenceCheckpointError, match="expected a state_dict"):
        load_reference_checkpoint([1, 2], crafter_fixture["config"])
