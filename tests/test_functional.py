"""Golden-value tests of torchrl_deltairis.functional (values computed by hand)."""

import math

import pytest
import torch

from torchrl_deltairis import functional as Fn


@pytest.mark.parametrize(
    "x, expected",
    [(0.0, 0.0), (math.e - 1, 1.0), (-(math.e - 1), -1.0), (math.e ** 2 - 1, 2.0)],
    ids=["zero", "plus_one", "minus_one", "plus_two"],
)
def test_symlog_golden(x, expected):
    assert Fn.symlog(torch.tensor([x], dtype=torch.float64)).item() == pytest.approx(expected, abs=1e-12)
    assert Fn.symexp(torch.tensor([expected], dtype=torch.float64)).item() == pytest.approx(x, abs=1e-12)


def test_symexp_inverts_symlog():
    x = torch.linspace(-1e4, 1e4, 101, dtype=torch.float64)
    torch.testing.assert_close(Fn.symexp(Fn.symlog(x)), x)


@pytest.mark.parametrize(
    "x, expected",
    [
        (0.25, [0.75, 0.25, 0.0]),   # between buckets 0 and 1
        (1.0, [0.0, 1.0, 0.0]),      # on a bucket centre
        (1.5, [0.0, 0.5, 0.5]),
        (0.0, [1.0, 0.0, 0.0]),      # the low end: bucket 0 (the reference wraps to the last bucket)
        (-3.0, [1.0, 0.0, 0.0]),     # below the range: clamped
        (7.0, [0.0, 0.0, 1.0]),      # above the range: clamped to high - 1e-5
    ],
    ids=["between", "centre", "upper_half", "low_end", "below", "above"],
)
def test_two_hot_golden(x, expected):
    out = Fn.two_hot(torch.tensor([x], dtype=torch.float64), low=0.0, high=2.0, num_buckets=3)
    torch.testing.assert_close(out, torch.tensor([expected], dtype=torch.float64), atol=2e-5, rtol=0)


def test_two_hot_does_not_mutate_and_inverts():
    x = torch.tensor([-25.0, -3.3, 0.0, 0.07, 19.5, 30.0])
    before = x.clone()
    th = Fn.two_hot(x)
    torch.testing.assert_close(x, before)  # the reference clamps its input in place
    assert th.shape == (6, 255)
    torch.testing.assert_close(th.sum(-1), torch.ones(6))
    inside = Fn.two_hot_inverse(th)[1:-1]
    torch.testing.assert_close(inside, x[1:-1], atol=1e-5, rtol=0)


def test_two_hot_expectation_of_a_peaked_distribution():
    logits = torch.full((255,), -1e9)
    logits[127] = 0.0  # bucket 127 is the centre, 0 in symlog space
    logits_two = logits.clone()
    logits_two[127], logits_two[128] = 0.0, 0.0  # half on 0, half on 40/254
    assert Fn.two_hot_expectation(logits).item() == pytest.approx(0.0, abs=1e-6)
    assert Fn.two_hot_expectation(logits_two).item() == pytest.approx(math.expm1(20 / 254), rel=1e-5)


def test_lambda_returns_golden():
    rewards = torch.tensor([[1.0, 2.0], [1.0, 2.0]])
    values = torch.tensor([[0.5, 4.0], [0.5, 4.0]])
    ends = torch.tensor([[0, 0], [0, 1]])
    bootstrap = torch.tensor([10.0, 10.0])
    gamma, lam = 0.5, 0.8
    out = Fn.lambda_returns(rewards=rewards, values=values, ends=ends, value_bootstrap=bootstrap, gamma=gamma,
                            lambda_=lam)
    g1 = 2.0 + 0.5 * 10.0  # last step: (1-λ)·V + λ·G with G = V = bootstrap
    g0 = 1.0 + 0.5 * (0.2 * 4.0 + 0.8 * g1)
    g1_end = 2.0  # the episode ends at t = 1: nothing is bootstrapped
    g0_end = 1.0 + 0.5 * (0.2 * 4.0 + 0.8 * g1_end)
    torch.testing.assert_close(out, torch.tensor([[g0, g1], [g0_end, g1_end]]))


def test_lambda_returns_limits_and_purity():
    torch.manual_seed(0)
    rewards, values = torch.randn(3, 5), torch.randn(3, 5)
    ends, boot = torch.zeros(3, 5, dtype=torch.long), torch.randn(3)
    copies = [t.clone() for t in (rewards, values, ends, boot)]
    kwargs = dict(rewards=rewards, values=values, ends=ends, value_bootstrap=boot, gamma=0.9)
    td0 = Fn.lambda_returns(**kwargs, lambda_=0.0)
    next_values = torch.cat((values[:, 1:], boot[:, None]), 1)
    torch.testing.assert_close(td0, rewards + 0.9 * next_values)  # λ = 0: one-step TD targets
    mc = Fn.lambda_returns(**kwargs, lambda_=1.0)
    discounts = 0.9 ** torch.arange(6.0)
    expected0 = (rewards * discounts[:5]).sum(1) + discounts[5] * boot  # λ = 1: discounted return
    torch.testing.assert_close(mc[:, 0], expected0)
    for t, c in zip((rewards, values, ends, boot), copies):
        assert torch.equal(t, c)


def test_mask_after_first_done_golden():
    ends = torch.tensor([[0, 1, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]])
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(Fn.mask_after_first_done(ends=ends), expected)
    assert torch.equal(Fn.mask_after_first_done(ends=ends.bool()), expected)
