"""The actor-critic objective: stock λ-returns, masking, no world-model gradient, swappable losses,
SoftUpdate."""

import pytest
import torch
from tensordict import TensorDict
from torchrl.objectives.value import TDLambdaEstimator

from torchrl_deltairis import functional, keys
from torchrl_deltairis.envs.imagination import ImaginationEnv, imagine
from torchrl_deltairis.objectives.actor_critic_loss import ImaginationActorCriticLoss
from torchrl_deltairis.objectives.loss_assembly import (
    MaskedLoss,
    build_actor_critic_loss,
    make_target_updater,
)
from torchrl_deltairis.objectives.loss_slot import ActorCriticLossConfig
from torchrl_deltairis.policy import make_actor, recurrent_state_spec

B, L, H = 4, 2, 3


def test_td_lambda_estimator_reproduces_the_reference_lambda_returns():
    g = torch.Generator().manual_seed(0)
    rewards, values = torch.randn(3, 7, generator=g), torch.randn(3, 7, generator=g)
    ends = torch.rand(3, 7, generator=g) < 0.2
    bootstrap = torch.randn(3, generator=g)
    expected = functional.lambda_returns(rewards=rewards, values=values, ends=ends, value_bootstrap=bootstrap,
                                         gamma=0.997, lambda_=0.95)
    next_values = torch.cat((values[:, 1:], bootstrap[:, None]), 1)
    td = TensorDict({"state_value": values[..., None], "next": {
        "state_value": next_values[..., None], "reward": rewards[..., None], "done": ends[..., None],
        "terminated": ends[..., None]}}, batch_size=[3, 7])
    out = TDLambdaEstimator(gamma=0.997, lmbda=0.95, value_network=None)(td)
    torch.testing.assert_close(out["value_target"][..., 0], expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out["advantage"][..., 0], expected - values, atol=1e-6, rtol=1e-6)


def rollout_for(models, seed=0):
    spec = recurrent_state_spec(models.configs.actor_critic.lstm_dim)
    env = ImaginationEnv(models.tokenizer, models.world_model, sample=True, policy_state_spec=spec)
    g = torch.Generator().manual_seed(seed)
    ctx = TensorDict(pixels=torch.randint(0, 256, (B, L + 1, 3, 64, 64), dtype=torch.uint8, generator=g),
                     action=torch.randint(0, models.configs.world_model.num_actions, (B, L), generator=g),
                     batch_size=[B])
    torch.manual_seed(seed)
    return imagine(env, make_actor(models.actor_critic.model), models.actor_critic, ctx, H)


def test_reinforce_loss_masks_after_the_first_end_and_spares_the_world_model(tiny_models):
    rollout = rollout_for(tiny_models)
    ends = torch.zeros(B, H, 1, dtype=torch.bool)
    ends[0, 0] = True
    rollout["next", "terminated"] = rollout["next", "done"] = ends
    rollout[keys.MASK] = functional.mask_after_first_done(ends=ends[..., 0])
    loss = ImaginationActorCriticLoss(tiny_models.actor_critic, ActorCriticLossConfig())
    out = loss(rollout)
    # the signal metrics count the steps up to the first end only: row 0 has one
    reward, mask = rollout["next", keys.REWARD][..., 0].abs(), rollout[keys.MASK]
    torch.testing.assert_close(out["imagined_reward_abs"], reward[mask].mean())
    assert out["advantage_abs"] >= 0
    total = out["loss_actions"] + out["loss_values"] + out["loss_entropy"]
    total.backward()
    model, target = tiny_models.actor_critic.model, tiny_models.actor_critic.target_model
    assert model.actor_linear.weight.grad.abs().sum() > 0 and model.critic_linear.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in target.parameters())
    assert all(p.grad is None for p in tiny_models.world_model.parameters())
    assert all(p.grad is None for p in tiny_models.tokenizer.parameters())
    # steps after the first end do not count: changing their actions changes nothing
    rollout2 = rollout.clone()
    num_actions = tiny_models.configs.actor_critic.num_actions
    rollout2[keys.ACTION][0, 1:] = (rollout2[keys.ACTION][0, 1:] + 1) % num_actions
    out2 = loss(rollout2)
    torch.testing.assert_close(out2["loss_actions"], out["loss_actions"])


@pytest.mark.parametrize("kind", ["reinforce", "a2c", "ppo"])
def test_each_configured_loss_trains_on_imagined_rollouts(kind):
    from conftest import small_models

    models = small_models("atari_small", seed=1)
    rollout = rollout_for(models, seed=1)
    loss = MaskedLoss(build_actor_critic_loss(models.actor_critic, ActorCriticLossConfig(
        loss=kind, gamma=0.995, entropy_weight=0.002)))
    params = list(models.actor_critic.model.parameters())
    optim = torch.optim.Adam(params, lr=3e-3)
    totals = []
    for _ in range(6):
        out = loss(rollout.clone())
        total = sum(v for k, v in out.items() if k.startswith("loss_"))
        optim.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        optim.step()
        totals.append(total.item())
    assert all(map(torch.isfinite, map(torch.tensor, totals)))
    assert totals[-1] < totals[0], totals
    assert all(p.grad is None for p in models.world_model.parameters())


def test_soft_update_keeps_the_target_then_moves_it_by_0_005():
    from conftest import small_models

    models = small_models("atari_small")
    ac = models.actor_critic
    with torch.no_grad():
        ac.target_model.actor_linear.weight.add_(1.0)  # a target that differs from the model
    before = ac.target_model.actor_linear.weight.clone()
    loss = ImaginationActorCriticLoss(ac, ActorCriticLossConfig())
    updater = make_target_updater(loss, 0.995)
    torch.testing.assert_close(ac.target_model.actor_linear.weight, before)
    updater.step()
    expected = 0.995 * before + 0.005 * ac.model.actor_linear.weight
    torch.testing.assert_close(ac.target_model.actor_linear.weight, expected)


def test_unknown_loss_is_rejected():
    with pytest.raises(ValueError, match="reinforce"):
        ActorCriticLossConfig(loss="dqn")
