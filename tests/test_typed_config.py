"""The run's config, typed: parsed once into dataclasses (torchrl_deltairis/config), each field with its
meaning and range where it is declared, the reference table in docs/config.md generated from them, and a
run built from one parse (the loss slot resolved once, the model configs read once).
"""

import dataclasses
import typing
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from conftest import TINY
from torchrl_deltairis.checked import describe, parse, setting
from torchrl_deltairis.config import RunConfig, reference_table
from torchrl_deltairis.config.run import DOCUMENTED

ROOT = Path(__file__).resolve().parents[1]


def _cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("config", overrides=["wandb.mode=disabled", *overrides])


def _leaves(cls: type) -> int:
    hints = typing.get_type_hints(cls)
    return sum(_leaves(hints[f.name]) if dataclasses.is_dataclass(hints[f.name]) else 1
               for f in dataclasses.fields(cls) if f.init)


@pytest.mark.parametrize("where, cls", DOCUMENTED, ids=lambda x: x if isinstance(x, str) else x.__name__)
def test_every_field_states_its_meaning(where, cls):
    rows = describe(cls, where)
    assert len(rows) == _leaves(cls)  # every leaf declared with setting(doc=...)
    assert all(row[4].strip() for row in rows)


def test_docs_config_is_the_table_of_the_declarations():
    """docs/config.md holds ``python -m torchrl_deltairis.config``'s table: a field added, renamed or given
    another range without regenerating it fails here."""
    assert reference_table() in (ROOT / "docs" / "config.md").read_text()


@pytest.mark.parametrize("env, params", [("crafter", "crafter"), ("atari", "atari"), ("atari_cpu", "atari_cpu"),
                                         ("reach", "reach"), ("recall", "recall"), ("crafter", "smoke")])
def test_every_preset_parses_and_its_typed_values_are_the_yaml_ones(env, params):
    cfg = _cfg(f"env={env}", f"params={params}")
    run = RunConfig.from_hydra(cfg)
    p = cfg.params
    assert run.common.epochs == p.common.epochs and run.training.world_model.steps_per_epoch == \
        p.training.world_model.steps_per_epoch
    assert run.imagination.burn_in_length == p.actor_critic.burn_in_length == \
        run.training.actor_critic.sequence_length - 1
    assert run.models.world_model.transformer_config.max_blocks == p.training.world_model.sequence_length
    assert run.actor_critic_loss.gamma == p.actor_critic.gamma and run.actor_critic_loss.resolved is not None
    assert run.env_train.size == run.models.tokenizer.image_size


def test_an_unknown_key_or_a_missing_one_is_one_line_naming_it():
    with pytest.raises(ValueError, match=r"^params.common.epoch is not a key; expected one of \['compile'"):
        RunConfig.from_hydra(_cfg("+params.common.epoch=3"))
    with pytest.raises(ValueError, match=r"^params.evaluation.every is missing; expected evaluate every"):
        RunConfig.from_hydra(_cfg("~params.evaluation.every"))
    with pytest.raises(ValueError, match=r"^params.extra is not a key"):
        RunConfig.from_hydra(_cfg("+params.extra=1"))


def test_a_declared_range_is_checked_with_its_bounds():
    @dataclasses.dataclass
    class Node:
        rate: float = setting(0.5, doc="a rate", low=0, high=1, high_open=True)
        count: int | None = setting(None, doc="a count", low=1)
        mode: str = setting("a", doc="a mode", choices=("a", "b"))

    assert parse(Node, {"rate": 0, "count": 3}, "x") == Node(0.0, 3, "a")
    assert parse(Node, {"count": None}, "x").count is None
    for node, message in (({"rate": 1}, r"x.rate=1; expected a number in \[0, 1\)"),
                          ({"rate": "high"}, r"x.rate='high'; expected a number in \[0, 1\)"),
                          ({"count": 0}, r"x.count=0; expected an integer >= 1"),
                          ({"count": True}, r"x.count=True; expected an integer >= 1"),
                          ({"mode": "c"}, r"x.mode='c'; expected one of \['a', 'b'\]"),
                          ({"rate": float("nan")}, r"x.rate=nan; expected a finite number")):
        with pytest.raises(ValueError, match=f"^{message}$"):
            parse(Node, node, "x")


def test_a_run_is_built_from_one_parse(tmp_path, monkeypatch):
    """The loss slot is resolved once and the model configs read once per run (they were 5 and 2 times)."""
    import torchrl_deltairis.config.run as config_run
    import torchrl_deltairis.objectives.loss_slot as loss_slot
    from torchrl_deltairis.build.lifecycle import build_trainer

    calls = {"resolve_loss": 0, "configs_from_reference": 0}

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(loss_slot, "resolve_loss", counted("resolve_loss", loss_slot.resolve_loss))
    monkeypatch.setattr(config_run, "configs_from_reference",
                        counted("configs_from_reference", config_run.configs_from_reference))
    trainer = build_trainer(_cfg(*TINY, "params.collection.train.num_envs=1", "params.collection.test.num_envs=1"),
                            tmp_path / "run", ROOT / "train.py", progress=False)
    trainer.close()
    assert calls == {"resolve_loss": 1, "configs_from_reference": 1}
