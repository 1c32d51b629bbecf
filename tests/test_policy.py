"""The actor-critic as TorchRL modules: step and recurrent modes, is_init resets, burn-in, the actor."""

import torch
from tensordict import TensorDict
from torchrl.envs import ExplorationType, set_exploration_type
from torchrl.modules import set_recurrent_mode

from torchrl_deltairis import keys
from torchrl_deltairis.collectors import ExplorationPolicy
from torchrl_deltairis.policy import ActorCriticTrunk, burn_in, make_actor, recurrent_state_spec

B, T = 2, 4


def frames(seed=0, shape=(B, T)):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (*shape, 3, 64, 64), dtype=torch.uint8, generator=g)


def test_step_mode_matches_the_network_and_writes_next_state(tiny_models):
    net = tiny_models.actor_critic.model
    trunk = ActorCriticTrunk(net)
    px = frames()[:, 0]
    h0 = torch.randn(B, net.config.lstm_dim)
    td = trunk(TensorDict({keys.PIXELS: px, keys.RECURRENT_STATE_H: h0, keys.RECURRENT_STATE_C: h0 * 0.5},
                          batch_size=[B]))
    out = net(px.float() / 255, h0, h0 * 0.5)
    torch.testing.assert_close(td[keys.LOGITS], out.logits_actions)
    torch.testing.assert_close(td["next", keys.RECURRENT_STATE_H], out.hx)
    assert td[keys.STATE_VALUE].shape == (B, 1)
    # step mode reads the TensorDict's state as it is (the env's primer zeroes it at resets; a burned-in
    # state written at the start of a collect stands even on a fresh episode's first step) ...
    td1 = trunk(td.select(keys.PIXELS, keys.RECURRENT_STATE_H, keys.RECURRENT_STATE_C)
                .set(keys.IS_INIT, torch.ones(B, 1, dtype=torch.bool)))
    torch.testing.assert_close(td1[keys.LOGITS], out.logits_actions)
    # ... and starts from zeros when there is none
    td0 = trunk(td.select(keys.PIXELS))
    torch.testing.assert_close(td0[keys.LOGITS], net(px.float() / 255).logits_actions)


def test_recurrent_mode_equals_stepping_with_is_init_resets(tiny_models):
    net = tiny_models.actor_critic.model
    trunk = ActorCriticTrunk(net)
    px = frames(1)
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    is_init[1, 2] = True  # a new episode starts inside row 1 (a real env's primer zeroes the state there)
    h0 = torch.randn(B, T, net.config.lstm_dim)  # only t = 0 is read in recurrent mode
    seq = TensorDict({keys.PIXELS: px, keys.IS_INIT: is_init, keys.RECURRENT_STATE_H: h0,
                      keys.RECURRENT_STATE_C: h0.clone()}, batch_size=[B, T])
    with set_recurrent_mode(True):
        out = trunk(seq.clone())
    h, c, logits = h0[:, 0], h0[:, 0].clone(), []
    for t in range(T):
        keep = (~is_init[:, t]).float()
        step = trunk(TensorDict({keys.PIXELS: px[:, t], keys.IS_INIT: is_init[:, t],
                                 keys.RECURRENT_STATE_H: h * keep, keys.RECURRENT_STATE_C: c * keep}, batch_size=[B]))
        logits.append(step[keys.LOGITS])
        h, c = step["next", keys.RECURRENT_STATE_H], step["next", keys.RECURRENT_STATE_C]
    torch.testing.assert_close(out[keys.LOGITS], torch.stack(logits, 1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["next", keys.RECURRENT_STATE_H][:, -1], h, atol=1e-5, rtol=1e-5)


def test_burn_in_is_the_state_after_the_context(tiny_models):
    net = tiny_models.actor_critic.model
    px = frames(2)
    h, c = burn_in(net, px)
    ref = net.unroll(px.float() / 255)
    torch.testing.assert_close(h, ref.hx)
    h0, c0 = burn_in(net, px[:, :0])
    assert h0.abs().sum() == 0 and h0.shape == (B, net.config.lstm_dim)


def test_actor_samples_categorical_actions_with_log_probs(tiny_models):
    actor = make_actor(ActorCriticTrunk(tiny_models.actor_critic.model))
    td = TensorDict({keys.PIXELS: frames(3)[:, 0]}, batch_size=[B])
    with set_exploration_type(ExplorationType.MODE):
        out = actor(td.clone())
    assert torch.equal(out[keys.ACTION], out[keys.LOGITS].argmax(-1))
    expected = torch.distributions.Categorical(logits=out[keys.LOGITS]).log_prob(out[keys.ACTION])
    torch.testing.assert_close(out[keys.ACTION_LOG_PROB], expected)
    torch.manual_seed(0)
    sampled = actor(td.clone())
    assert sampled[keys.ACTION].dtype == torch.int64 and sampled[keys.ACTION].shape == (B,)


def test_the_same_trunk_drives_the_exploration_policy(tiny_models):
    trunk = ActorCriticTrunk(tiny_models.actor_critic.model)
    num_actions = tiny_models.configs.actor_critic.num_actions
    policy = ExplorationPolicy(num_actions, trunk, epsilon=0.0, temperature=1.0)
    td = policy(TensorDict({keys.PIXELS: frames(4)[:, 0], keys.IS_INIT: torch.ones(B, 1, dtype=torch.bool)},
                           batch_size=[B]))
    assert td[keys.ACTION].shape == (B,) and ("next", keys.RECURRENT_STATE_H) in td.keys(True)


def test_recurrent_state_spec_shapes():
    spec = recurrent_state_spec(64)
    assert spec[keys.RECURRENT_STATE_H].shape == (64,) and spec[keys.RECURRENT_STATE_C].shape == (64,)
