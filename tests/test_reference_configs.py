"""Our composed configs against the reference's own, leaf for leaf.

``tests/data/reference-configs/`` is the reference's ``config/`` folder (vmicheli/delta-iris at
f8d4173), copied as data. Both sides are composed and resolved by Hydra (the reference's ``${eval:..}``
values through an arithmetic-only resolver) and flattened to dotted leaves. Every leaf must be equal,
except those listed below, each with its reason (docs/departures.md); a listed leaf that no
longer differs fails too, so the list stays exact.
"""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from torchrl_deltairis.config_resolvers import register_resolvers

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "data" / "reference-configs"
ABSENT = "<absent>"

register_resolvers()  # the reference registers Python's eval; arithmetic is all its configs need

# Reference leaf → our leaf, where only the layout differs (same value).
RENAMED = {
    # crafter: the reference nests `gym.wrappers.TimeLimit(env=crafter.Env(reward=True))`; our env
    # config is one flat node read by torchrl_deltairis.envs.make_env
    "env.train.env.reward": "env.train.reward",
    "env.test.env.reward": "env.test.reward",
}

# Leaves allowed to differ: (reference value, our value) → why. ABSENT: the side has no such leaf.
_CLASS_PATHS = {  # Hydra `_target_`s naming the reference's own classes; our code builds from plain nodes
    "params.tokenizer._target_": "models.tokenizer.TokenizerConfig",
    "params.world_model._target_": "models.world_model.WorldModelConfig",
    "params.world_model.transformer_config._target_": "models.transformer.TransformerConfig",
    "params.actor_critic._target_": "models.actor_critic.ActorCriticConfig",
    "params.actor_critic.model._target_": "models.actor_critic.CnnLstmActorCritic",
}
_COMMON = {
    **{leaf: ((target, ABSENT), "the reference's class path; we build models from typed configs")
       for leaf, target in _CLASS_PATHS.items()},
    **{f"params.{part}.num_actions": ((None, ABSENT), "null placeholder, filled from the env at build time "
                                      "in both (ours never reads it from the config)")
       for part in ("tokenizer", "world_model", "actor_critic.model")},
    "params.common.device": (("cuda:0", "auto"), "the reference hard-codes cuda:0; auto takes a GPU when "
                             "there is one (devices come from config)"),
    "params.common.seed": ((None, 0), "the reference seeds from the clock; we seed everything (docs/departures.md#bugs-fixed)"),
    "params.common.compile": ((ABSENT, False), "ours only: torch.compile of the convolutional parts (opt-in)"),
    "params.common.memory_format": ((ABSENT, "auto"), "ours only: NCHW or channels_last convolutions (same results)"),
    "params.common.conv_batch_chunk": ((ABSENT, "auto"), "ours only: images per convolution call (same results)"),
    "params.training.imagination_bf16": ((ABSENT, False), "ours only: opt-in bf16 convolutions in imagination "
                                         "(tests/test_imagination_precision.py)"),
    "params.common.deterministic": ((ABSENT, False), "ours only: deterministic GPU kernels (bit-identical "
                                    "reruns on CUDA, slower); the CPU path is deterministic without it"),
    "wandb.mode": (("online", "offline"), "offline needs no network; wandb.mode=online streams as the reference"),
    "tensorboard": ((ABSENT, False), "ours only: optional TensorBoard event files"),
    "params.actor_critic.loss": ((ABSENT, "reinforce"), "ours only: the loss slot (reinforce is the "
                                 "reference's objective)"),
    **{f"params.actor_critic.{leaf}": ((ABSENT, value), "ours only: the loss slot's update scheme and knobs "
                                       "(objectives/loss_slot.py)")
       for leaf, value in (("updates.mode", None), ("updates.epochs", None), ("updates.num_minibatches", None),
                           ("updates.value_estimator", None), ("updates.replay_capacity", 100000),
                           ("updates.replay_batch_size", 256), ("ppo_clip_epsilon", 0.2),
                           ("target_ema_decay", 0.995))},
    **{f"params.tokenizer.{leaf}": ((ABSENT, value), "ours only: a constant the reference hard-codes, with its "
                                    "value (quantizer EMA rates, loss weights)")
       for leaf, value in (("codebook_ema_decay", 0.99), ("freqs_ema_decay", 0.98), ("loss.commitment_weight", 0.02),
                           ("loss.l1_weight", 0.1), ("loss.l2_weight", 1.0), ("loss.worst_pixel_weight", 0.01))},
    "params.training.bf16": ((ABSENT, True), "ours only: names the reference's hard-wired bf16 autocast of "
                             "the tokenizer and world model (docs/departures.md#constants-become-config-fields)"),
    "params.collection.train.steps_per_batch": ((ABSENT, 25), "ours only: steps per env in one TorchRL "
                                                "collector batch (the reference steps one at a time; the "
                                                "collected totals follow num_steps either way)"),
    "params.evaluation.actor_critic.start_after_epochs": (None, "never read by the reference "),
    "params.evaluation.actor_critic.num_episodes_to_save": (None, "never read by the reference "),
}
ALLOWED = {
    "crafter": {
        **_COMMON,
        "env.train._target_": (("gym.wrappers.TimeLimit", ABSENT), "the reference's constructor; ours is "
                               "family: crafter (make_crafter_env adds the time limit)"),
        "env.train.env._target_": (("crafter.Env", ABSENT), "the reference's constructor"),
        "env.train.id": ((ABSENT, "crafter"), "ours only: which env to build"),
        "env.train.family": ((ABSENT, "crafter"), "ours only: which env family to build"),
        "env.train.size": ((ABSENT, 64), "ours only: crafter.Env's default 64x64 made explicit"),
        **{leaf.replace("train", "test", 1): value for leaf, value in {
            "env.train._target_": (("gym.wrappers.TimeLimit", ABSENT), "test: ${.train}, as above"),
            "env.train.env._target_": (("crafter.Env", ABSENT), "test: ${.train}, as above"),
            "env.train.id": ((ABSENT, "crafter"), "test: ${.train}, as above"),
            "env.train.family": ((ABSENT, "crafter"), "test: ${.train}, as above"),
            "env.train.size": ((ABSENT, 64), "test: ${.train}, as above"),
        }.items()},
    },
    "atari": {
        **_COMMON,
        "env.train._target_": (("envs.make_atari", ABSENT), "the reference's constructor; ours is family: atari"),
        "env.test._target_": (("envs.make_atari", ABSENT), "the reference's constructor; ours is family: atari"),
        "env.train.family": ((ABSENT, "atari"), "ours only: which env family to build"),
        "env.test.family": ((ABSENT, "atari"), "ours only: which env family to build"),
        "env.train.repeat_action_probability": ((ABSENT, 0.0), "ours only: 0 is the reference's NoFrameskip-v4 "
                                                "(no sticky actions); 0.25 gives the v5 protocol"),
        "env.test.repeat_action_probability": ((ABSENT, 0.0), "as train"),
    },
}


def flatten(tree, prefix: str = "") -> dict:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def reference_config(name: str) -> dict:
    with initialize_config_dir(config_dir=str(REFERENCE), version_base="1.3"):
        cfg = compose("trainer", overrides=[f"env={name}", f"params={name}"])
    flat = flatten(OmegaConf.to_container(cfg, resolve=True))
    return {RENAMED.get(leaf, leaf): value for leaf, value in flat.items()}


def our_config(name: str) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=[f"env={name}", f"params={name}"])
    return flatten(OmegaConf.to_container(cfg, resolve=True))


def differing_leaves(name: str) -> dict:
    ref, ours = reference_config(name), our_config(name)
    return {leaf: (ref.get(leaf, ABSENT), ours.get(leaf, ABSENT)) for leaf in sorted(set(ref) | set(ours))
            if ref.get(leaf, ABSENT) != ours.get(leaf, ABSENT)}


@pytest.mark.parametrize("name", ["crafter", "atari"])
def test_every_leaf_is_the_references_or_listed_with_a_reason(name):
    diff, allowed = differing_leaves(name), ALLOWED[name]
    unexplained = {leaf: values for leaf, values in diff.items() if leaf not in allowed}
    assert not unexplained, f"leaves that differ from the reference's {name} config without a reason: {unexplained}"
    for leaf, (values, _reason) in allowed.items():
        assert leaf in diff, f"{leaf} is listed as differing but now equals the reference: drop it from ALLOWED"
        if values is not None:
            assert diff[leaf] == values, (leaf, diff[leaf], values)


def test_the_comparison_sees_the_values():
    """The leaves that matter were compared (a broken flatten would compare nothing)."""
    ref, ours = reference_config("atari"), our_config("atari")
    assert len(ref) > 140 and len(ours) > 140
    assert ref["params.training.tokenizer.sequence_length"] == ours["params.training.tokenizer.sequence_length"] == 21
    assert ref["params.training.actor_critic.sequence_length"] == 6  # through the eval resolver
    assert ref["params.tokenizer.max_codebook_updates_with_revival"] == 400
    crafter = our_config("crafter")
    assert crafter["params.training.tokenizer.sequence_length"] == 21
    assert reference_config("crafter")["env.train.reward"] is True
