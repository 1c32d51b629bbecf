"""A TorchRL user's own loop on our pieces, with the networks the README names: a stock ``Collector``
on the imagination env, a ``TensorDictReplayBuffer``, and a stock loss with its stock estimator
(``ClipPPOLoss`` with ``GAE``, ``A2CLoss`` with ``TDLambdaEstimator``). Nothing of the run's own
builder is used. The CNN-LSTM cannot run under ``torch.vmap`` (no batching rule for the LSTM cell):
the estimators and losses take ``deactivate_vmap=True``, and forgetting it gives a one-line error
naming the flag."""

import pytest
import torch
from tensordict import TensorDict
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
from torchrl.objectives import A2CLoss, ClipPPOLoss

from conftest import small_models
from torchrl_deltairis import keys
from torchrl_deltairis.envs.imagination import ImaginationEnv
from torchrl_deltairis.policy import (ActorCriticTrunk, ValueOperator, burn_in, make_actor, make_value_operator,
                                      recurrent_state_spec)

B, L, H = 4, 2, 3


@pytest.fixture(scope="module")
def models():
    return small_models("atari_small")


def _collector(models, seed=0):
    net = models.actor_critic.model
    g = torch.Generator().manual_seed(seed)

    def start():
        pixels = torch.randint(0, 256, (B, L + 1, 3, 64, 64), dtype=torch.uint8, generator=g)
        actions = torch.randint(0, net.config.num_actions, (B, L), generator=g)
        h, c = burn_in(net, pixels[:, :-1])
        return TensorDict(pixels=pixels, action=actions, recurrent_state_h=h, recurrent_state_c=c, batch_size=[B])

    env = ImaginationEnv(models.tokenizer, models.world_model, batch_size=[B], context_fn=start,
                         policy_state_spec=recurrent_state_spec(net.config.lstm_dim))
    env.set_seed(seed)
    actor = make_actor(ActorCriticTrunk(net))  # the README's policy: the actor writes no values
    return Collector(env, actor, frames_per_batch=B * H, total_frames=-1, reset_at_each_iter=True), actor


def _loss(name, actor, critic, vmap: bool):
    off = {} if vmap else {"deactivate_vmap": True}
    if name == "ppo":
        loss = ClipPPOLoss(actor, critic, **off)
        loss.make_value_estimator("gae", gamma=0.9, lmbda=0.95, **off)
    else:
        loss = A2CLoss(actor, critic)
        loss.make_value_estimator("tdlambda", gamma=0.9, lmbda=0.95, **off)
    return loss


@pytest.mark.parametrize("name", ["ppo", "a2c"])
def test_a_users_loop_trains_with_stock_losses_and_estimators(models, name):
    torch.manual_seed(0)
    net = models.actor_critic.model
    initial = {k: v.clone() for k, v in net.state_dict().items()}
    collector, actor = _collector(models)
    critic = make_value_operator(net)
    assert isinstance(critic, ValueOperator) and critic.out_keys == [keys.STATE_VALUE]
    loss = _loss(name, actor, critic, vmap=False)
    optimizer = torch.optim.Adam(loss.parameters(), lr=1e-3)
    buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(1_000), batch_size=B * H)
    batch = next(iter(collector))
    assert keys.STATE_VALUE not in batch.keys()  # the rollout holds no stale values
    with torch.no_grad():
        loss.value_estimator(batch)  # advantages and value targets over [B, H]
    buffer.extend(batch.reshape(-1))
    critic_losses = []
    for step in range(8):
        sample = buffer.sample()
        out = loss(sample)
        if name == "ppo" and step == 0:  # the policy re-evaluated on the stored steps gives their log-probs
            assert float(out["kl_approx"].detach().abs()) < 1e-5 and float(out["clip_fraction"].detach()) == 0
        critic_losses.append(float(loss(buffer[:]).get("loss_critic").mean()))
        total = sum(v.mean() for k, v in out.items() if k.startswith("loss_"))
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    collector.shutdown()
    assert critic_losses[-1] < critic_losses[0]  # it learns the value targets it was given
    assert any(not torch.equal(initial[k], v) for k, v in net.state_dict().items())
    net.load_state_dict(initial)


@pytest.mark.parametrize("name", ["ppo", "a2c"])
def test_forgetting_deactivate_vmap_names_the_flag(models, name):
    collector, actor = _collector(models)
    loss = _loss(name, actor, make_value_operator(models.actor_critic.model), vmap=True)
    batch = next(iter(collector))
    collector.shutdown()
    with pytest.raises(RuntimeError, match="deactivate_vmap=True"):
        with torch.no_grad():
            loss.value_estimator(batch)
