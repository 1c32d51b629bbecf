"""Parity with the reference Δ-IRIS outputs in tests/data (README there): the fixtures made on an AMD
EPYC with traces of every draw, and those made earlier on another CPU without them. Both must pass on
any CPU: near-ties and rounding ties go either way (torchrl_deltairis/parity.py)."""

from pathlib import Path

import pytest
import torch

from torchrl_deltairis import parity, parity_replay

DATA = Path(__file__).parent / "data"
FIXTURES = ["crafter_small", "atari_small", "xeon/crafter_small", "xeon/atari_small"]
REQUIRED_PREFIXES = ("tokenizer.", "world_model.", "two_hot", "lambda_returns", "actor_critic.logits_")
IMAGINATION = ("imagination.", "ac_imagine.", "actor_critic.losses.", "actor_critic.policy_entropy")


@pytest.fixture(scope="module", params=FIXTURES)
def rows(request):
    torch.manual_seed(0)
    return {r.key: r for r in parity.run_parity(str(DATA / f"{request.param}.pt"))}


def test_every_key_passes(rows):
    assert len(rows) == 36  # 34 outputs and how each of the two rollouts met the reference's draws
    failing = [(r.key, r.status, r.max_abs_error, r.note) for r in rows.values()
               if r.status not in ("PASS", parity.PARTED)]
    assert not failing, failing  # nothing FAILs and nothing is "not run"
    assert sum(key.startswith(IMAGINATION) for key in rows) == 17


def test_required_keys_pass_and_only_the_actor_critic_rollout_may_part(rows):
    required = [r for r in rows.values() if r.key.startswith(REQUIRED_PREFIXES)]
    assert len(required) == 19 and all(r.status == "PASS" for r in required)
    assert rows["imagination.burn_in_output_sequence"].status == "PASS"  # the KV-cache path
    # the rollout driven by the fixture's actions is compared at every step, whatever the CPU
    assert all(rows[k].status == "PASS" and not rows[k].note for k in parity._FIXED_ACTION_KEYS)
    parted = [k for k, r in rows.items() if r.status == parity.PARTED]
    assert all(k.startswith(("ac_imagine.", "actor_critic.losses.", "actor_critic.policy_entropy")) for k in parted)
    # the first imagined step of the actor-critic's rollout is always compared
    for key in ("ac_imagine.actions", "ac_imagine.logits_actions", "ac_imagine.target_values"):
        assert rows[key].status == "PASS" and rows[key].max_abs_error is not None


def test_exit_status_is_zero_only_if_nothing_failed(capsys):
    fixture = str(DATA / "atari_small.pt")
    assert parity.main([fixture]) == 0
    printed = capsys.readouterr().out
    assert "tokenizer.tokens" in printed and "0 failed, 0 not run" in printed


@pytest.fixture(scope="module")
def atari():
    return torch.load(DATA / "atari_small.pt", weights_only=True)


def _moved(fixture, name, scale=0.01):
    """The fixture with one weight tensor moved by ``scale`` of its mean magnitude (seeded noise)."""
    state = dict(fixture["state_dict"])
    weight = state[name]
    state[name] = weight + scale * weight.abs().mean() * torch.randn(weight.shape,
                                                                    generator=torch.Generator().manual_seed(0))
    return dict(fixture, state_dict=state)


def test_a_real_difference_fails_on_both_kinds_of_fixture(atari):
    """Models ~1 % off fail, with or without a trace: the near-tie and rounding-tie rules cannot hide
    them. A token head off moves the traced draws' log-probabilities; a decoder off moves the frames of
    the rollout driven by the fixture's actions beyond rounding, trace or not."""
    xeon = torch.load(DATA / "xeon" / "atari_small.pt", weights_only=True)
    rows = {r.key: r for r in parity.run_parity(_moved(atari, "world_model.head_latents.head_module.2.weight"))}
    assert rows["imagination.trace"].status == "FAIL" and rows["ac_imagine.trace"].status == "FAIL"
    assert "log-probabilities" in rows["imagination.trace"].note
    for fixture in (atari, xeon):
        rows = {r.key: r for r in parity.run_parity(_moved(fixture, "tokenizer.decoder.decoder.11.weight"))}
        assert rows["imagination.trace"].status == "FAIL" and "frame" in rows["imagination.trace"].note
        assert rows["tokenizer.encode_decode"].status == "FAIL"


def _replayed(trace, kind, logits):
    replay = parity.DrawReplay(trace)
    return replay, replay(kind, logits)


def test_a_near_tie_takes_the_traces_choice_and_a_larger_gap_fails():
    recorded = torch.tensor([[0.0, -3e-4, -5.0]]).log_softmax(-1)  # choice 0, rival 1 within the bound
    trace = {"kind": ["latent"], "logits": [recorded.unsqueeze(1)], "choice": [torch.tensor([[0]])]}
    ours = torch.tensor([[-1.6e-4, -1.4e-4, -5.0]])  # another CPU, each within tolerance: index 1 wins
    replay, taken = _replayed(trace, "latent", ours)
    assert taken.tolist() == [0] and not replay.errors and len(replay.adopted) == 1
    assert len(parity_replay.trace_near_ties(trace)) == 1
    far = {**trace, "logits": [torch.tensor([[0.0, -5e-3, -5.0]]).log_softmax(-1).unsqueeze(1)]}
    replay, _ = _replayed(far, "latent", torch.tensor([[0.0, 1e-3, -5.0]]))
    assert replay.errors  # log-probabilities off, and a gap of 5e-3 is no near-tie
    replay, _ = _replayed(trace, "end", ours)
    assert "trace has 'latent'" in replay.errors[0]


def test_rounding_ties_count_pixels_within_the_tolerance_of_a_level_boundary():
    frame = torch.tensor([[10.5, 10.5 + 0.02, 10.2, 10.49]]) / 255  # at, 8e-5 from, far from, 4e-5 from
    assert parity_replay.rounding_ties(frame.reshape(1, 1, 2, 2)).tolist() == [3]


def test_without_fixture_frames_a_row_is_compared_up_to_its_first_rounding_tie():
    replay = parity.DrawReplay()
    replay("action", torch.zeros(2, 3))
    tied = torch.full((2, 1, 2, 2), 0.2)
    tied[1, 0, 0, 0] = 10.5 / 255
    replay("frame", tied)  # row 1's first imagined frame has a tie: its step 1 on is not comparable
    assert replay.first_uncomparable.tolist() == [1 << 30, 1]
    expected = {"a": torch.zeros(2, 3), "loss": torch.tensor(0.5)}
    out = {"a": torch.tensor([[0.0, 0.0, 0.0], [0.0, 7.0, 7.0]]), "loss": torch.tensor(0.7)}
    rows = {r.key: r for r in parity_replay._compare_comparable(expected, out, replay.first_uncomparable, horizon=3)}
    assert rows["a"].status == "PASS" and "4/6" in rows["a"].note
    assert rows["loss"].status == parity.PARTED
    out["a"][0, 2] = 1.0  # row 0 never parted: a difference there fails
    assert parity_replay._compare_comparable(expected, out, replay.first_uncomparable, horizon=3)[0].status == "FAIL"


def test_the_tracefree_search_finds_the_other_side_of_a_near_tie():
    """No trace: the fixture's rollout took the runner-up of a near-tie; the search takes it too."""
    def run(draw):
        first = draw("latent", torch.tensor([[1e-4, 0.0, -4.0]]))  # 0 by 1e-4: a near-tie
        second = draw("latent", torch.tensor([[0.0, -9.0, -9.0]]) if first.item() == 1
                      else torch.tensor([[-9.0, 0.0, -9.0]]))
        return {"tokens": torch.stack([first, second], dim=1)}
    expected = {"tokens": torch.tensor([[1, 0]])}
    rows, row = parity.replay_rollout(run, expected, horizon=2, frames=torch.zeros(1, 2, 1, 1, 1))
    assert row.status == "PASS" and "1 taken the other way" in row.note and rows[0].status == "PASS"
    rows, row = parity.replay_rollout(run, {"tokens": torch.tensor([[2, 0]])}, horizon=2,
                                      frames=torch.zeros(1, 2, 1, 1, 1))
    assert row.status == "FAIL"  # index 2 is 4 away: no near-tie leads there


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
