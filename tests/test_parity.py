"""Parity with the reference Δ-IRIS outputs stored in tests/data (copies of ../shared/parity)."""

from pathlib import Path

import pytest
import torch

from torchrl_deltairis import parity

DATA = Path(__file__).parent / "data"
REQUIRED_PREFIXES = ("tokenizer.", "world_model.", "two_hot", "lambda_returns", "actor_critic.logits_")


@pytest.fixture(scope="module", params=["crafter_small", "atari_small"])
def rows(request):
    torch.manual_seed(0)
    return parity.run_parity(str(DATA / f"{request.param}.pt"))


def test_every_key_passes(rows):
    assert len(rows) == 35
    failing = [(r.key, r.status, r.max_abs_error, r.note) for r in rows if r.status != "PASS"]
    assert not failing, failing  # nothing FAILs and nothing is "not run"
    imagination = ("imagination.", "ac_imagine.", "actor_critic.losses.", "actor_critic.policy_entropy")
    assert sum(r.key.startswith(imagination) for r in rows) == 16


def test_required_keys_pass(rows):
    required = [r for r in rows if r.key.startswith(REQUIRED_PREFIXES)]
    assert len(required) == 19
    burn_in = [r for r in rows if r.key == "imagination.burn_in_output_sequence"]
    assert [r.status for r in burn_in] == ["PASS"]  # the KV-cache path, against the reference
    failing = [(r.key, r.status, r.max_abs_error, r.note) for r in required if r.status != "PASS"]
    assert not failing, failing
    assert not [r.key for r in rows if r.status == "FAIL"]


def test_exit_status_is_zero_only_if_everything_passed(rows, capsys):
    fixture = str(DATA / "atari_small.pt")
    code = parity.main([fixture])
    printed = capsys.readouterr().out
    assert "tokenizer.tokens" in printed and "PASS" in printed
    atari_rows = parity.run_parity(fixture)
    assert (code == 0) == all(r.status == "PASS" for r in atari_rows)
    assert code == 0 and "0 failed, 0 not run" in printed


def test_compare_is_exact_for_integers_and_tolerant_for_floats():
    tokens = torch.tensor([[1, 2, 3]])
    assert parity.compare("t", tokens.clone(), tokens).status == "PASS"
    assert parity.compare("t", tokens + torch.tensor([[0, 0, 1]]), tokens).status == "FAIL"
    x = torch.tensor([1.0, -2.0])
    assert parity.compare("x", x + 5e-5, x).status == "PASS"
    assert parity.compare("x", x + 1e-3, x).status == "FAIL"
    assert parity.compare("x", x[:1], x).status == "FAIL"
    assert parity.compare("x", None, x).status == "not run"


def test_rounded_frames_allow_only_ties_within_tolerance():
    expected = torch.tensor([100.0, 50.0]) / 255
    tie = torch.tensor([99.4999, 50.0]) / 255  # float noise at a rounding boundary
    ours = (tie * 255).round() / 255
    assert parity.compare_rounded("f", ours, tie, expected).status == "PASS"
    far = torch.tensor([99.4, 50.0]) / 255
    assert parity.compare_rounded("f", (far * 255).round() / 255, far, expected).status == "FAIL"
