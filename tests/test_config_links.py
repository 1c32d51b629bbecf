"""Values that follow from others are interpolations, as in the reference: changing the source of a
link changes every consumer, in the composed config and in what a run builds from it.

The links (configs/params/crafter.yaml, inherited by every preset):
- ``params.actor_critic.burn_in_length`` → the actor-critic's training segments (burn-in + 1: the
  imagination's burn-in in training) and the burn-in of the train and test collections;
- ``params.training.world_model.sequence_length`` → the world model's context (``max_blocks``) and,
  for Crafter, the tokenizer's training segments;
- ``params.tokenizer.image_channels`` / ``image_size`` / ``num_tokens`` and the latent sizes → the
  encoder's input channels, the decoder's input latents, the CNNs' and the world model's image sizes,
  the transformer's tokens per block.
"""

from pathlib import Path

import pytest
import torch
from conftest import add_random_episodes
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from torchrl_deltairis.data import EpisodeStore
from torchrl_deltairis.data.counts import EpisodeCounts
from torchrl_deltairis.build.components import make_segment_source
from torchrl_deltairis.build.models import make_models
from torchrl_deltairis.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
PRESETS = [("crafter", "crafter"), ("atari", "atari"), ("crafter", "smoke"), ("atari", "smoke"),
           ("reach", "reach"), ("recall", "recall"), ("atari_cpu", "atari_cpu")]
# presets whose tokenizer trains on the world model's segments (the reference's Atari tokenizer: 21 steps,
# its world model 26; Recall's and the laptop preset's tokenizers train on shorter segments)
TOKENIZER_FOLLOWS = ("crafter", "smoke", "reach")


def _compose(env: str, params: str, *overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("config", overrides=[f"env={env}", f"params={params}", *overrides])


def _resolved(env: str, params: str, *overrides: str) -> dict:
    return OmegaConf.to_container(_compose(env, params, *overrides), resolve=True)["params"]


@pytest.mark.parametrize("env,params", PRESETS)
def test_burn_in_sets_the_actor_critic_segments_and_both_collections(env, params):
    default = _resolved(env, params)
    burn_in = default["actor_critic"]["burn_in_length"] + 7
    p = _resolved(env, params, f"params.actor_critic.burn_in_length={burn_in}")
    assert default["training"]["actor_critic"]["sequence_length"] == default["actor_critic"]["burn_in_length"] + 1
    assert p["training"]["actor_critic"]["sequence_length"] == burn_in + 1
    assert p["collection"]["train"]["config"]["burn_in_length"] == burn_in
    assert p["collection"]["test"]["config"]["burn_in_length"] == burn_in


@pytest.mark.parametrize("env,params", PRESETS)
def test_the_world_models_sequence_sets_its_context(env, params):
    default = _resolved(env, params)
    length = default["training"]["world_model"]["sequence_length"] + 5
    p = _resolved(env, params, f"params.training.world_model.sequence_length={length}")
    assert p["world_model"]["transformer_config"]["max_blocks"] == length
    if params in TOKENIZER_FOLLOWS:
        assert p["training"]["tokenizer"]["sequence_length"] == length


@pytest.mark.parametrize("env,params", PRESETS)
def test_image_and_latent_sizes_follow_the_tokenizers(env, params):
    default = _resolved(env, params)
    tok = default["tokenizer"]
    assert tok["encoder_config"]["image_channels"] == 2 * tok["image_channels"] + 1
    assert tok["decoder_config"]["latent_dim"] == (tok["frame_cnn_config"]["latent_dim"] + tok["decoder_act_channels"]
                                                   + tok["encoder_config"]["latent_dim"])
    p = _resolved(env, params, "params.tokenizer.image_channels=1", "params.tokenizer.image_size=48",
                  "params.tokenizer.num_tokens=9", "params.tokenizer.frame_cnn_config.latent_dim=5",
                  "params.tokenizer.encoder_config.latent_dim=11", "params.tokenizer.decoder_act_channels=2")
    tok, wm = p["tokenizer"], p["world_model"]
    assert tok["encoder_config"]["image_channels"] == 3
    assert tok["decoder_config"]["image_channels"] == tok["frame_cnn_config"]["image_channels"] == 1
    assert tok["decoder_config"]["latent_dim"] == 5 + 2 + 11
    assert wm["image_channels"] == wm["frame_cnn_config"]["image_channels"] == 1
    assert wm["image_size"] == 48
    assert wm["transformer_config"]["tokens_per_block"] == 2 + 9


def test_a_run_builds_what_the_links_say(tmp_path):
    """Past the YAML: the models and the actor-critic's segment source of a run built with a changed
    burn-in and world-model sequence use the new values."""
    store = EpisodeStore(tmp_path / "store", capacity=200)
    add_random_episodes(store, (40, 30))
    cfg = _compose("recall", "recall", "params.common.device=cpu", "params.actor_critic.burn_in_length=6",
                   "params.training.world_model.sequence_length=13")
    models = make_models(RunConfig.from_hydra(cfg), 2, torch.device("cpu"))
    assert models.world_model.config.transformer_config.max_blocks == 13
    assert models.configs.actor_critic_training["burn_in_length"] == 6
    sample, _ = make_segment_source(RunConfig.from_hydra(cfg), "actor_critic", store, EpisodeCounts(), torch.device("cpu"), seed=0)
    assert sample().shape[-1] == 7  # the imagination's burn-in (6) and the frame it starts from
    sample, _ = make_segment_source(RunConfig.from_hydra(cfg), "world_model", store, EpisodeCounts(), torch.device("cpu"), seed=0)
    assert sample().shape[-1] == 13
