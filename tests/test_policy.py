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
    # is_init zeroes the incoming state
    td0 = trunk(td.select(keys.PIXELS, keys.RECURRENT_STATE_H, keys.RECURRENT_STATE_C)
                .set(keys.IS_INIT, torch.ones(B, 1, dtype=torch.bool)))
    torch.testing.assert_close(td0[keys.LOGITS], net(px.float() / 255).logits_actions)


def test_recurrent_mode_equals_stepping_with_is_init_resets(tiny_models):
    net = tiny_models.actor_critic.model
    trunk = ActorCriticTrunk(net)
    px = frames(1)
    is_init = torch.zeros(B, T, 1, dtype=torch.bool)
    is_init[1, 2] = True  # a new episode starts inside row 1
    h0 = torch.randn(B, T, net.config.lstm_dim)  # only t = 0 is read in recurrent mode
    seq = TensorDict({keys.PIXELS: px, keys.IS_INIT: is_init, keys.RECURRENT_STATE_H: h0,
                      keys.RECURRENT_STATE_C: h0.clone()}, batch_size=[B, T])
    with set_recurrent_mode(True):
        out = trunk(seq.clone())
    h, c, logits = h0[:, 0], h0[:, 0].clone(), []
    for t in range(T):
        step = trunk(TensorDict({keys.PIXELS: px[:, t], keys.IS_INIT: is_init[:, t],
                                 keys.RECURRENT_STATE_H: h, keys.RECURRENT_STATE_C: c}, batch_size=[B]))
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



def test_collector_burn_in_and_state_carried_in_a_real_env(tmp_path):
    from conftest import DATA

    from torchrl_deltairis.collectors import EpisodeCollector
    from torchrl_deltairis.data import EpisodeStore
    from torchrl_deltairis.envs import REACH_ID, make_batched_env
    from torchrl_deltairis.policy import CollectBurnIn, recurrent_state_primer
    from torchrl_deltairis.reference import DeltaIrisModels, configs_from_reference

    config = torch.load(DATA / "atari_small.pt", weights_only=True)["config"]
    torch.manual_seed(0)
    net = DeltaIrisModels(configs_from_reference(config, num_actions=5)).actor_critic.model
    trunk = ActorCriticTrunk(net, write_values=False)
    env = make_batched_env({"family": "gym", "id": REACH_ID}, 2, seed=0, parallel=False)
    env.append_transform(recurrent_state_primer(net.config.lstm_dim))
    policy = ExplorationPolicy(5, trunk, epsilon=0.0)
    # step_mdp carries the state the policy writes (the primer puts it in the specs)
    with torch.no_grad():
        r = env.rollout(4, policy, break_when_any_done=False)
    carried = ~r[keys.IS_INIT][:, 1:, 0]
    h, next_h = r[keys.RECURRENT_STATE_H], r["next", keys.RECURRENT_STATE_H]
    assert torch.equal(h[:, 1:][carried], next_h[:, :-1][carried]) and h[:, 1:][carried].abs().sum() > 0

    store = EpisodeStore(tmp_path / "store", capacity=1000)
    burn = CollectBurnIn(trunk, store, burn_in_length=3, policy=policy)
    collector = EpisodeCollector(env, policy, store, steps_per_batch=4, progress=False, before_collect=burn)
    collector.collect(8)
    frames = burn.frames(2, (3, 64, 64))  # what the next collect burns in on: the newest stored frames
    for e, episode in enumerate(store._open_episode.tolist()):
        if episode >= 0:
            stored = store.episode(episode)[keys.PIXELS][-3:]
            assert torch.equal(frames[e, 3 - stored.shape[0]:], stored)
            assert not frames[e, :3 - stored.shape[0]].any()
    calls = []
    trunk.register_forward_hook(lambda m, args, out: calls.append(out.select(keys.PIXELS, "next").clone()))
    collector.collect(2)
    collector.shutdown()
    burned = net.unroll(frames.float() / 255)
    expected = net(calls[0][keys.PIXELS].float() / 255, burned.hx, burned.cx)
    torch.testing.assert_close(calls[0]["next", keys.RECURRENT_STATE_H], expected.hx, atol=1e-5, rtol=1e-5)
