"""Bad overrides fail before any work, naming the key and what was expected; `params.initialization`."""

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from torchrl_deltairis.build.checks import validate_config
from torchrl_deltairis.build.models import initialize_models, make_models
from torchrl_deltairis.config import RunConfig
from torchrl_deltairis.reference import to_reference_state_dict

ROOT = Path(__file__).resolve().parents[1]


def _cfg(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("config", overrides=["params=smoke", *overrides])


def test_the_shipped_presets_validate():
    for overrides in ((), ("env=atari", "params=atari"), ("env=reach", "params=reach"), ("env=recall", "params=recall"),
                      ("env=match", "params=reach"), ("env=gym",)):
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            validate_config(compose("config", overrides=list(overrides)))


@pytest.mark.parametrize("override, message", [
    ("params.actor_critic.loss=dqn", r"params.actor_critic.loss='dqn'; expected one of \['reinforce', 'a2c', 'ppo', "
     r"'sac'\] or a node with _target_"),
    ("params.actor_critic.loss={_target_:torch.nn.Linear}", r"params.actor_critic.loss._target_='torch.nn.Linear' "
     r"is not a torchrl LossModule class"),
    ("params.actor_critic.updates.mode=offline", r"params.actor_critic.updates.mode='offline'; expected one of "
     r"\['on_policy', 'off_policy'\]"),
    ("+params.tokenizer.codebook_decay=0.9", r"params.tokenizer.codebook_decay is not a key; expected one of "
     r"\['always_revive_below_bits', 'codebook_dim', 'codebook_ema_decay'"),
    ("+params.world_model.transformer_config.mlp_ratio=two",
     r"params.world_model.transformer_config.mlp_ratio='two'; expected an integer"),
    ("params.tokenizer.loss.l1_weight=abc", r"params.tokenizer.loss.l1_weight='abc'; expected a number"),
    ("params.tokenizer.codebook_ema_decay=true", r"params.tokenizer.codebook_ema_decay=True; expected a number"),
    ("+params.actor_critic.model.zero_init_critic=1", r"params.actor_critic.model.zero_init_critic=1; expected "
     r"true or false"),
    ("+params.actor_critic.updates.batch=3", r"params.actor_critic.updates.batch is not a key; expected one of"),
    ("params.common.do_checkpoint=maybe", r"params.common.do_checkpoint='maybe'; expected true or false"),
    ("params.common.deterministic=1", r"params.common.deterministic=1; expected true or false"),
    ("params.common.compile=fast", r"params.common.compile='fast'; expected one of \[False, True, 'default', "),
    ("params.common.memory_format=nhwc", r"params.common.memory_format='nhwc'; expected one of \['auto', "
     r"'contiguous', 'channels_last'\]"),
    ("params.common.conv_batch_chunk=0", r"params.common.conv_batch_chunk=0; expected auto, null or a positive int"),
    ("params.common.conv_batch_chunk=many", r"params.common.conv_batch_chunk='many'; expected auto, null or a "
     r"positive int"),
    ("params.training.imagination_bf16=auto", r"params.training.imagination_bf16='auto'; expected true or false"),
    ("params.training.learning_rate=abc", r"params.training.learning_rate='abc'; expected a number > 0"),
    ("params.training.tokenizer.max_grad_norm=0", r"params.training.tokenizer.max_grad_norm=0; expected a number > 0"),
    ("params.training.world_model.priority_alpha=-1",
     r"params.training.world_model.priority_alpha=-1; expected a number >= 0"),
    ("params.training.world_model.weight_decay=-0.1",
     r"params.training.world_model.weight_decay=-0.1; expected a number >= 0"),
    ("params.collection.train.config.epsilon=1.5",
     r"params.collection.train.config.epsilon=1.5; expected a number in \[0, 1\]"),
    ("params.collection.test.config.temperature=0",
     r"params.collection.test.config.temperature=0; expected a number > 0"),
    ("params.actor_critic.gamma=1.5", r"params.actor_critic.gamma=1.5; expected a number in \[0, 1\]"),
    ("params.actor_critic.lambda_=-0.5", r"params.actor_critic.lambda_=-0.5; expected a number in \[0, 1\]"),
    ("params.actor_critic.entropy_weight=-1", r"params.actor_critic.entropy_weight=-1; expected a number >= 0"),
    ("params.actor_critic.target_ema_decay=1", r"params.actor_critic.target_ema_decay=1; expected a number in "
     r"\[0, 1\)"),
    ("params.actor_critic.ppo_clip_epsilon=0", r"params.actor_critic.ppo_clip_epsilon=0; expected a number > 0"),
    ("params.actor_critic.burn_in_length=-2", r"params.actor_critic.burn_in_length=-2; expected an integer >= 0"),
    ("params.tokenizer.freqs_ema_decay=1.2", r"params.tokenizer.freqs_ema_decay=1.2; expected a number in \[0, 1\)"),
    ("params.tokenizer.loss.commitment_weight=-0.02",
     r"params.tokenizer.loss.commitment_weight=-0.02; expected a number >= 0"),
    ("params.world_model.ends_weight=-1", r"params.world_model.ends_weight=-1; expected a number >= 0"),
    ("params.world_model.transformer_config.attn_pdrop=1",
     r"params.world_model.transformer_config.attn_pdrop=1; expected a number in \[0, 1\)"),
    ("params.world_model.transformer_config.max_blocks=3", r"params.world_model.transformer_config.max_blocks=3; "
     r"expected >= params.training.world_model.sequence_length = 8"),
    ("params.actor_critic.imagination_horizon=8", r"params.world_model.transformer_config.max_blocks=8; expected >= "
     r"params.training.actor_critic.sequence_length \+ params.actor_critic.imagination_horizon - 1 = 10"),
    ("params.actor_critic.loss=ppo params.training.actor_critic.grad_acc_steps=2",
     r"params.training.actor_critic.grad_acc_steps=2 with several updates per imagined batch"),
    ("params.actor_critic.updates.num_minibatches=0",
     r"params.actor_critic.updates.num_minibatches=0; expected an integer >= 1"),
    ("params.actor_critic.loss={_target_:torchrl.objectives.DiscreteSACLoss,alpha:1}",
     r"params.actor_critic.loss.alpha is not a parameter of DiscreteSACLoss"),
    # a class whose __init__ takes **kwargs is checked against its parents' parameters and what it reads
    ("params.actor_critic.loss={_target_:torchrl.objectives.ClipPPOLoss,clip_epsilom:0.1}",
     r"params.actor_critic.loss.clip_epsilom is not a parameter of ClipPPOLoss; close matches: \['clip_epsilon'\]"),
    ("params.tokenizer.encoder_config.num_channels=30", r"num_channels|num_groups|multiple"),
    ("params.common.device=gpu", r"params.common.device='gpu' is not a device; expected one of"),
    ("params.common.epochs=0", r"params.common.epochs=0; expected an integer >= 1"),
    ("params.training.learning_rate=0", r"params.training.learning_rate=0; expected a number > 0"),
    ("+params.training.actor_critic.learning_rate=-1",
     r"params.training.actor_critic.learning_rate=-1; expected a number > 0"),
    ("params.training.world_model.batch_num_samples=-4",
     r"params.training.world_model.batch_num_samples=-4; expected an integer >= 1"),
    ("env.train.size=32", r"env.train.size=32 but params.tokenizer.image_size=64; expected the env's frames at the "
     r"models' size"),
    ("params.world_model.image_size=32", r"env.train.size=64 but params.world_model.image_size=32; expected"),
    ("params.evaluation.tokenizer.batch_num_samples=0",
     r"params.evaluation.tokenizer.batch_num_samples=0; expected an integer >= 1"),
    ("params.evaluation.world_model.start_after_epochs=-1",
     r"params.evaluation.world_model.start_after_epochs=-1; expected an integer >= 0"),
    ("params.training.tokenizer.sequence_length=1", r"params.training.tokenizer.sequence_length=1; expected an integer >= 2"),
    ("params.collection.test.config.num_episodes=1.5",
     r"params.collection.test.config.num_episodes=1.5; expected an integer >= 1"),
    ("env.train.id=Tetris", r"Unknown Atari 100k game or env id 'Tetris'. Valid names: Alien"),
    ("env.train.repeat_action_probability=2", r"env.train.repeat_action_probability=2; expected a number in "
     r"\[0, 1\]"),
    ("params.tokenizer.decoder_config.latent_dim=3", r"decoder_config.latent_dim=3, expected"),
    ("params.collection.path_to_static_dataset=/nonexistent",
     r"path_to_static_dataset='/nonexistent' has no episode store at /nonexistent/train"),
    ("params.initialization.path_to_checkpoint=/nonexistent.pt",
     r"path_to_checkpoint='/nonexistent.pt' is not a file"),
])
def test_bad_values_fail_naming_the_key_and_the_expected_values(override, message):
    cfg = _cfg("env=atari" if override.startswith("env.train") else "params.common.seed=0", *override.split(" "))
    with pytest.raises(ValueError, match=message):
        validate_config(cfg)


def test_files_that_are_not_checkpoints_are_refused_in_one_line(tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"^params.initialization.path_to_checkpoint='.*notes.pt' is not a "
                       r"checkpoint torch can read \(") as err:
        validate_config(_cfg(f"params.initialization.path_to_checkpoint={bad}"))
    assert "\n" not in str(err.value)
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(ValueError, match=r"holds a Tensor; expected a state_dict"):
        validate_config(_cfg(f"params.initialization.path_to_checkpoint={tmp_path / 'tensor.pt'}"))


def test_a_checkpoint_of_another_model_names_the_keys_that_differ(tmp_path):
    small = make_models(RunConfig.from_hydra(_cfg()), 17, torch.device("cpu"))
    torch.save(to_reference_state_dict(small), tmp_path / "small.pt")
    cfg = _cfg(f"params.initialization.path_to_checkpoint={tmp_path / 'small.pt'}", "params.tokenizer.codebook_dim=32")
    with pytest.raises(ValueError, match=r"small.pt' is a checkpoint of another model: tokenizer.'quantizer.codebook' "
                       r"has shape \(64, 16\), expected \(64, 32\) \(and 3 more\)$"):
        run = RunConfig.from_hydra(cfg)
        initialize_models(make_models(run, 17, torch.device("cpu")), run.initialization)


def test_the_bad_input_table_is_large():
    table = test_bad_values_fail_naming_the_key_and_the_expected_values.pytestmark[0].args[1]
    assert len(table) >= 40


def test_unknown_keys_and_groups_are_refused_by_hydra_with_the_choices():
    with pytest.raises(Exception, match="learning_rat"):
        _cfg("params.training.learning_rat=0.1")
    with pytest.raises(Exception, match=r"(?s)Could not find 'params/tiny'.*Available options.*smoke"):
        _cfg("params=tiny")


def test_initialization_loads_the_chosen_parts(tmp_path):
    cfg = _cfg("env=reach", "params=reach")
    torch.manual_seed(0)
    source = make_models(RunConfig.from_hydra(cfg), 5, torch.device("cpu"))
    path = tmp_path / "last.pt"
    torch.save(to_reference_state_dict(source), path)
    torch.manual_seed(1)
    target = make_models(RunConfig.from_hydra(cfg), 5, torch.device("cpu"))
    cfg.params.initialization.path_to_checkpoint = str(path)
    cfg.params.initialization.load_actor_critic = False
    assert initialize_models(target, RunConfig.from_hydra(cfg).initialization) == ["tokenizer", "world_model"]
    for part in ("tokenizer", "world_model"):
        for a, b in zip(getattr(source, part).state_dict().values(), getattr(target, part).state_dict().values()):
            assert torch.equal(a, b)
    first = next(iter(source.actor_critic.state_dict()))
    assert not torch.equal(source.actor_critic.state_dict()[first], target.actor_critic.state_dict()[first])

    torch.save({k: v for k, v in to_reference_state_dict(source).items() if k.startswith("tokenizer.")}, path)
    cfg.params.initialization.load_actor_critic = True
    with pytest.raises(ValueError, match="holds no world_model weights.*load_world_model=false"):
        initialize_models(target, RunConfig.from_hydra(cfg).initialization)


def test_a_component_may_have_its_own_learning_rate():
    training = RunConfig.from_hydra(_cfg("+params.training.world_model.learning_rate=0.0003")).training
    assert training.learning_rate_of("world_model") == 0.0003
    assert training.learning_rate_of("tokenizer") == training.learning_rate_of("actor_critic") == training.learning_rate
    assert training.learning_rate_key("world_model") == "params.training.world_model.learning_rate"
    assert training.learning_rate_key("tokenizer") == "params.training.learning_rate"
