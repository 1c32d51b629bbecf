"""Checkpoints are atomic, round-trip a resume state, and refuse another run's config."""

import pytest
import torch
import torch.nn as nn

from torchrl_deltairis.checkpoint import CheckpointError, config_differences, load_checkpoint, save_checkpoint

CONFIG = {"params": {"common": {"epochs": 10, "resume": False}, "tokenizer": {"codebook_size": 1024}},
          "env": {"train": {"id": "crafter"}}, "wandb": {"mode": "offline"}}


def test_round_trip_with_optimizer_and_rng(tmp_path):
    net = nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    state = {"epoch": 3, "optimizers": {"toy": opt.state_dict()}, "rng": torch.get_rng_state()}
    save_checkpoint(tmp_path, state, net.state_dict(), CONFIG)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "state.pt"]  # no temporary left behind
    resumed = {**CONFIG, "wandb": {"mode": "online"}, "params": {**CONFIG["params"], "common": {
        "epochs": 10, "resume": True}}}
    loaded = load_checkpoint(tmp_path, resumed)  # logger and resume flag may differ
    assert loaded["epoch"] == 3 and torch.equal(loaded["rng"], state["rng"])
    fresh = torch.optim.Adam(net.parameters())
    fresh.load_state_dict(loaded["optimizers"]["toy"])
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    models = torch.load(tmp_path / "last.pt", weights_only=True)
    assert torch.equal(models["weight"], net.weight)


def test_another_config_is_refused_with_the_differing_keys(tmp_path):
    save_checkpoint(tmp_path, {"epoch": 1}, {}, CONFIG)
    other = {**CONFIG, "params": {**CONFIG["params"], "tokenizer": {"codebook_size": 512}}}
    with pytest.raises(CheckpointError, match=r"params.tokenizer.codebook_size: 1024 -> 512"):
        load_checkpoint(tmp_path, other)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing", CONFIG)
    torch.save({"weights": 1}, tmp_path / "state.pt")
    with pytest.raises(CheckpointError, match="not a torchrl_deltairis.checkpoint/1 checkpoint"):
        load_checkpoint(tmp_path, CONFIG)


def test_config_differences_lists_added_and_removed_keys():
    assert config_differences({"a": {"b": 1}}, {"a": {"b": 1}}) == []
    assert config_differences({"a": {"b": 1}}, {"a": {"c": 1}}) == ["a.b: 1 -> '<missing>'", "a.c: '<missing>' -> 1"]


def test_do_checkpoint_false_writes_the_agent_only(tmp_path):
    """params.common.do_checkpoint: false, as the reference: last.pt (the agent) and no resume state."""
    save_checkpoint(tmp_path, {"epoch": 1}, {"w": torch.zeros(2)}, {"a": 1}, resumable=False)
    assert (tmp_path / "last.pt").exists() and not (tmp_path / "state.pt").exists()
    with pytest.raises(CheckpointError, match="no checkpoint to resume"):
        load_checkpoint(tmp_path, {"a": 1})


def test_a_full_disk_during_a_checkpoint_keeps_the_last_one_and_says_so_in_one_line(tmp_path, monkeypatch):
    import errno

    from torchrl_deltairis.cli import disk_full_message

    save_checkpoint(tmp_path, {"epoch": 1}, {"w": torch.zeros(2)}, CONFIG)

    def full(obj, file, *args, **kwargs):
        file.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "state.pt"))

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError) as err:
        save_checkpoint(tmp_path, {"epoch": 2}, {"w": torch.ones(2)}, CONFIG)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path, CONFIG)["epoch"] == 1  # the last checkpoint is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "state.pt"]  # no partial file left
    message = disk_full_message(err.value)
    assert "\n" not in message and message.startswith("error: no space left on the device while writing ")
    assert "resume with scripts/resume.sh" in message
