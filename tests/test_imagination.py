"""The imagination env: specs, rollouts with a recurrent policy, a user-built collector, bf16."""

import pytest
import torch
from tensordict import TensorDict
from unittest.mock import patch

from torchrl.collectors import Collector
from torchrl.data import Unbounded
from torchrl.envs import Compose, EnvBase, RewardSum, StepCounter, Transform, TransformedEnv
from torchrl.envs.utils import check_env_specs

from torchrl_deltairis import keys
from torchrl_deltairis.envs.imagination import ImaginationEnv, to_uint8_frames
from torchrl_deltairis.policy import ActorCriticTrunk, burn_in, make_actor, recurrent_state_spec

B, L, H = 3, 2, 4


def context(models, batch=B, seed=0):
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (batch, L + 1, 3, 64, 64), dtype=torch.uint8, generator=g)
    actions = torch.randint(0, models.configs.world_model.num_actions, (batch, L), generator=g)
    return TensorDict({keys.CONTEXT: TensorDict(pixels=pixels, action=actions, batch_size=[batch])},
                      batch_size=[batch])


def recurrent_env(models, **kwargs):
    spec = recurrent_state_spec(models.configs.actor_critic.lstm_dim)
    return ImaginationEnv(models.tokenizer, models.world_model, policy_state_spec=spec, **kwargs)


@pytest.mark.parametrize("state", [False, True], ids=["no_state", "policy_state"])
@pytest.mark.parametrize("batch, wrapped", [((), False), ((B,), False), ((B,), True)],
                         ids=["batch_unlocked", "fixed_batch", "fixed_batch_transformed"])
def test_check_env_specs(tiny_models, state, batch, wrapped):
    """TorchRL's spec check holds for the env as the README builds it: with and without the policy's
    state keys (a policy that writes none gets the state it had), batch-unlocked or of fixed batch, bare
    or in a TransformedEnv. TorchRL's RewardSum and StepCounter size their entries from the specs, so
    they need the fixed batch (on a batch-unlocked env their reset fails inside TorchRL)."""
    ctx = context(tiny_models).get(keys.CONTEXT)
    kwargs = dict(batch_size=batch, context_fn=lambda: ctx.clone())
    env = (recurrent_env(tiny_models, **kwargs) if state
           else ImaginationEnv(tiny_models.tokenizer, tiny_models.world_model, **kwargs))
    if wrapped:
        env = TransformedEnv(env, Compose(RewardSum(), StepCounter()))
    check_env_specs(env, tensordict=None if batch else env.reset(context=ctx))


def test_reset_without_context_names_the_keys(tiny_models):
    env = ImaginationEnv(tiny_models.tokenizer, tiny_models.world_model)
    with pytest.raises(ValueError, match="context"):
        env.reset(TensorDict(batch_size=[2]))


def test_rollout_with_recurrent_policy_advances_the_lstm(tiny_models):
    env = recurrent_env(tiny_models, sample=True)
    actor = make_actor(ActorCriticTrunk(tiny_models.actor_critic.model))
    start = env.reset(context(tiny_models)).exclude(keys.CONTEXT)
    torch.manual_seed(1)
    with torch.no_grad():
        r = env.rollout(H, actor, tensordict=start, auto_reset=False, break_when_any_done=False,
                        return_contiguous=True)
    assert r.batch_size == (B, H)
    assert r[keys.NEXT_PIXELS].dtype == torch.uint8 and r[keys.NEXT_PIXELS].shape == (B, H, 3, 64, 64)
    assert r[keys.NEXT_REWARD].shape == r[keys.NEXT_TERMINATED].shape == (B, H, 1)
    assert torch.equal(r[keys.NEXT_DONE], r[keys.NEXT_TERMINATED]) and not r[keys.NEXT_TRUNCATED].any()
    assert torch.equal(r[keys.PIXELS][:, 1:], r[keys.NEXT_PIXELS][:, :-1])
    h, next_h = r[keys.RECURRENT_STATE_H], r["next", keys.RECURRENT_STATE_H]
    assert torch.equal(h[:, 1:], next_h[:, :-1])  # step_mdp carries the policy's state...
    assert (h[:, 1:] - h[:, :-1]).abs().amax() > 1e-4  # ...and it really advances (no stale copy)
    # stepping the network by hand over the same frames gives the same states and logits
    net = tiny_models.actor_critic.model
    out = net.unroll(r[keys.PIXELS].float() / 255)
    torch.testing.assert_close(out.logits_actions, r[keys.LOGITS], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.hx, next_h[:, -1], atol=1e-5, rtol=1e-5)


def test_greedy_imagination_is_deterministic_and_sampling_follows_the_seed(tiny_models):
    def run(sample, seed):
        env = ImaginationEnv(tiny_models.tokenizer, tiny_models.world_model, sample=sample)
        start = env.reset(context(tiny_models)).exclude(keys.CONTEXT)
        torch.manual_seed(seed)
        start[keys.ACTION] = torch.zeros(B, dtype=torch.long)
        return env.step(start)["next"]
    assert torch.equal(run(False, 0)[keys.PIXELS], run(False, 1)[keys.PIXELS])
    assert torch.equal(run(True, 3)[keys.PIXELS], run(True, 3)[keys.PIXELS])
    assert not torch.equal(run(True, 3)[keys.PIXELS], run(True, 4)[keys.PIXELS])


def test_user_built_collector_runs_on_the_imagination_env(tiny_models):
    net = tiny_models.actor_critic.model

    def context_fn():
        td = context(tiny_models, batch=2, seed=5)
        h, c = burn_in(net, td[keys.CONTEXT_PIXELS][:, :-1])
        return td.set(keys.RECURRENT_STATE_H, h).set(keys.RECURRENT_STATE_C, c)

    env = recurrent_env(tiny_models, batch_size=[2], context_fn=context_fn)
    actor = make_actor(ActorCriticTrunk(net))
    collector = Collector(env, actor, frames_per_batch=2 * H, total_frames=4 * H, reset_at_each_iter=True,
                          auto_register_policy_transforms=False)
    batches = list(collector)
    collector.shutdown()
    assert len(batches) == 2
    for batch in batches:
        assert batch.batch_size == (2, H)
        assert batch[keys.NEXT_PIXELS].dtype == torch.uint8
        h = batch[keys.RECURRENT_STATE_H]
        assert torch.equal(h[:, 1:], batch["next", keys.RECURRENT_STATE_H][:, :-1])
    # each batch restarts from the same context: the burned-in state at t = 0 is identical
    torch.testing.assert_close(batches[0][keys.RECURRENT_STATE_H][:, 0], batches[1][keys.RECURRENT_STATE_H][:, 0])


class CountActions(Transform):
    """A user's own transform: the running sum of the actions taken, as an observation."""

    def __init__(self):
        super().__init__(in_keys=[], out_keys=["action_sum"])

    def _reset(self, tensordict, tensordict_reset):
        return tensordict_reset.set("action_sum", torch.zeros(*tensordict_reset.batch_size, 1))

    def _step(self, tensordict, next_tensordict):
        total = tensordict.get("action_sum") + tensordict.get(keys.ACTION).unsqueeze(-1).float()
        return next_tensordict.set("action_sum", total)

    def transform_observation_spec(self, spec):
        spec["action_sum"] = Unbounded(shape=(*spec.shape, 1), device=spec.device)
        return spec


def wrapped(models, **kwargs):
    return TransformedEnv(recurrent_env(models, **kwargs), Compose(RewardSum(), StepCounter(), CountActions()))


def start_context(models, batch=B, seed=0):
    td = context(models, batch, seed)[keys.CONTEXT]
    h, c = burn_in(models.actor_critic.model, td[keys.PIXELS][:, :-1])
    return td.set(keys.RECURRENT_STATE_H, h).set(keys.RECURRENT_STATE_C, c)


def test_wrapped_in_stock_transforms_the_context_and_policy_state_go_in_by_keyword(tiny_models):
    env = wrapped(tiny_models, batch_size=[B])  # stock transforms build their state from batched specs
    ctx = start_context(tiny_models)
    actor = make_actor(ActorCriticTrunk(tiny_models.actor_critic.model))
    start = env.reset(context=ctx)  # the keyword passes through TransformedEnv._reset
    assert torch.equal(start[keys.RECURRENT_STATE_H], ctx[keys.RECURRENT_STATE_H])  # the burned-in state is kept
    assert torch.equal(start[keys.PIXELS], ctx[keys.PIXELS][:, -1])
    with torch.no_grad():
        r = env.rollout(6, actor, tensordict=start, auto_reset=False, break_when_any_done=False)
    assert r.batch_size == (B, 6)
    episode_reward = r["next", "episode_reward"][..., 0]
    ends = r["next", keys.DONE][..., 0]
    steps = r["next", "step_count"][..., 0]
    sums = r["next", "action_sum"][..., 0]
    for b in range(B):  # the stock transforms restart after each predicted end; the user's sums the actions
        total, count, acts = 0.0, 0, 0.0
        for t in range(6):
            total, count, acts = total + float(r["next", keys.REWARD][b, t]), count + 1, acts + float(r[keys.ACTION][b, t])
            assert abs(float(episode_reward[b, t]) - total) < 1e-5 and int(steps[b, t]) == count
            assert float(sums[b, t]) == acts
            if ends[b, t]:
                total, count, acts = 0.0, 0, 0.0
    # the frames and LSTM states run on across a predicted end, as in the unwrapped env
    assert torch.equal(r[keys.PIXELS][:, 1:], r[keys.NEXT_PIXELS][:, :-1])
    assert torch.equal(r[keys.RECURRENT_STATE_H][:, 1:], r["next", keys.RECURRENT_STATE_H][:, :-1])


def test_an_end_in_the_middle_restarts_the_trajectory_bookkeeping_only(tiny_models):
    """A partial reset (TorchRL's maybe_reset after a predicted end) keeps the row's frame and state."""
    env = recurrent_env(tiny_models)
    ctx = start_context(tiny_models)
    td = env.reset(context=ctx)
    td[keys.ACTION] = torch.zeros(B, dtype=torch.long)
    td = env.step(td)
    nxt = td["next"].clone()
    nxt[keys.DONE][0] = True  # as if row 0 had ended
    after = env.maybe_reset(nxt.clone())
    assert torch.equal(after[keys.PIXELS], nxt[keys.PIXELS]) and not after[keys.DONE].any()
    # the row that "reset" goes on with the state it had (no policy has stepped it yet: the start state)
    assert torch.equal(after[keys.RECURRENT_STATE_H][0], ctx[keys.RECURRENT_STATE_H][0])


def test_maybe_reset_on_the_device_gives_torchrl_s_entries(tiny_models):
    """ImaginationEnv.maybe_reset (no host sync: ``where`` on the device) leaves a rollout exactly as
    TorchRL's maybe_reset (``done.any()`` on the host, then a partial reset of the rows that ended)."""
    def run(maybe_reset):
        env = recurrent_env(tiny_models, sample=True)
        env.set_seed(0)
        actor = make_actor(ActorCriticTrunk(tiny_models.actor_critic.model))
        start = env.reset(context=start_context(tiny_models))
        torch.manual_seed(1)  # the actor samples from the global generator
        with (patch.object(type(env.core), "forward", ends_in_turn(env.core)),
              patch.object(ImaginationEnv, "maybe_reset", maybe_reset), torch.no_grad()):
            return env.rollout(H, actor, tensordict=start, auto_reset=False, break_when_any_done=False,
                               return_contiguous=True)
    ours, torchrl = run(ImaginationEnv.maybe_reset), run(EnvBase.maybe_reset)
    ends = ours[keys.NEXT_DONE][..., 0]
    assert ends.any(0).all() and not ends.all(0).any()  # at each step, some rows end and others go on
    assert set(ours.keys(True, True)) == set(torchrl.keys(True, True))
    for key in ours.keys(True, True):
        assert torch.equal(ours[key], torchrl[key]), key
    assert not ours[keys.DONE].any()  # every row goes on, its flags reset


def ends_in_turn(core):
    """Imagined ends where (row + step) % 3 == 0, step counting from 1: some rows at each step."""
    forward, steps = type(core).forward, []

    def ending(self, frame, action):
        nxt, reward, _ = forward(self, frame, action)
        steps.append(None)
        return nxt, reward, (torch.arange(len(action)) + len(steps)) % 3 == 0
    return ending


def test_set_seed_makes_two_rollouts_identical(tiny_models):
    def run(seed, noise):
        env = recurrent_env(tiny_models, sample=True)
        env.set_seed(seed)
        torch.manual_seed(noise)  # the global generator: not what the env samples from
        torch.rand(noise + 1)
        td = env.reset(context=start_context(tiny_models))
        frames = []
        for t in range(3):
            td[keys.ACTION] = torch.full((B,), t % tiny_models.configs.world_model.num_actions)
            td = env.step_mdp(env.step(td))
            frames.append(td[keys.PIXELS])
        return torch.stack(frames)
    assert torch.equal(run(7, 0), run(7, 1))
    assert not torch.equal(run(7, 0), run(8, 0))


def test_default_rollout_does_not_stop_at_a_predicted_end(tiny_models):
    env = recurrent_env(tiny_models)
    env.reset(context=start_context(tiny_models))
    with patch.object(type(env.core), "forward", always_ends(env.core)):
        r = env.rollout(4, tensordict=env.reset(context=start_context(tiny_models)), auto_reset=False)
    assert r.batch_size == (B, 4) and r["next", keys.DONE].all()


def always_ends(core):
    forward = type(core).forward

    def ending(self, frame, action):
        nxt, reward, end = forward(self, frame, action)
        return nxt, reward, torch.ones_like(end)
    return ending


def test_torchrl_policy_transform_auto_registration_changes_nothing(tiny_models):
    """TorchRL 0.15 turns ``auto_register_policy_transforms`` on: the collector then adds the transforms
    a recurrent policy needs that the env's specs lack. The env declares ``is_init`` (always False), so
    no InitTracker comes to mark t = 0 and the imagined ends, where a recurrent policy would zero its
    burned-in state: with True, False and TorchRL 0.14's default the batches are the same, no
    FutureWarning is raised, and a stock loss re-running the policy over the batch in recurrent mode
    gets the collected log-probabilities back (ratio 1 before any update)."""
    import warnings

    from torchrl.modules import set_recurrent_mode

    net = tiny_models.actor_critic.model

    def context_fn():
        td = context(tiny_models, batch=2, seed=5)
        h, c = burn_in(net, td[keys.CONTEXT_PIXELS][:, :-1])
        return td.set(keys.RECURRENT_STATE_H, h).set(keys.RECURRENT_STATE_C, c)

    batches = []
    for flag in (True, False, None):
        env = recurrent_env(tiny_models, batch_size=[2], context_fn=context_fn, sample=True)
        env.set_seed(0)
        actor = make_actor(ActorCriticTrunk(net))
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            collector = Collector(env, actor, frames_per_batch=2 * H, total_frames=2 * H,
                                  reset_at_each_iter=True, auto_register_policy_transforms=flag)
            assert collector.env is env  # nothing was appended
            batches.append(next(iter(collector)))
        collector.shutdown()
    for other in batches[1:]:
        assert set(other.keys(True, True)) == set(batches[0].keys(True, True))
        for key in batches[0].keys(True, True):
            if key[0] != "collector" if isinstance(key, tuple) else True:
                assert torch.equal(other[key], batches[0][key]), key
    batch = batches[0]
    with torch.no_grad(), set_recurrent_mode(True):
        again = make_actor(ActorCriticTrunk(net)).get_dist(batch.clone()).log_prob(batch[keys.ACTION])
    torch.testing.assert_close(again, batch["action_log_prob"], rtol=0, atol=1e-5)


def test_a_stock_collector_on_the_wrapped_env(tiny_models):
    env = wrapped(tiny_models, batch_size=[2], context_fn=lambda: start_context(tiny_models, batch=2, seed=5))
    actor = make_actor(ActorCriticTrunk(tiny_models.actor_critic.model))
    collector = Collector(env, actor, frames_per_batch=2 * H, total_frames=2 * 2 * H, reset_at_each_iter=True,
                          auto_register_policy_transforms=False)
    batches = list(collector)
    collector.shutdown()
    assert len(batches) == 2
    for batch in batches:
        assert batch.batch_size == (2, H)
        assert {"episode_reward", "step_count", "action_sum"} <= set(batch["next"].keys())
        assert int(batch["next", "step_count"][:, 0].max()) == 1  # each batch starts from a fresh context


def test_bf16_autocast_imagination_runs(tiny_models):
    env = recurrent_env(tiny_models, sample=True)
    actor = make_actor(ActorCriticTrunk(tiny_models.actor_critic.model))
    start = env.reset(context(tiny_models)).exclude(keys.CONTEXT)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        r = env.rollout(2, actor, tensordict=start, auto_reset=False, break_when_any_done=False,
                        return_contiguous=True)
    assert r[keys.NEXT_PIXELS].dtype == torch.uint8
    assert r[keys.NEXT_REWARD].dtype == torch.float32 and torch.isfinite(r[keys.NEXT_REWARD]).all()


def test_frames_are_exact_1_255_steps():
    x = torch.tensor([0.0, 0.5, 1.2, -0.1, 100.4 / 255])
    assert to_uint8_frames(x).tolist() == [0, 128, 255, 0, 100]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_an_imagined_step_does_not_synchronise_the_gpu():
    from conftest import small_models

    models = small_models("atari_small").cuda()
    env = recurrent_env(models, sample=True)
    actor = make_actor(models.actor_critic.model)
    start = env.reset(context(models).to("cuda")).exclude(keys.CONTEXT)
    with torch.no_grad():
        env.rollout(1, actor, tensordict=start.clone(), auto_reset=False, break_when_any_done=False)
        td = actor(start.clone())
        torch.cuda.set_sync_debug_mode("error")
        try:
            env.core(td[keys.PIXELS], td[keys.ACTION])
        finally:
            torch.cuda.set_sync_debug_mode("default")


def test_imagination_refuses_to_go_past_the_world_models_context(tiny_models):
    """Context frames + horizon - 1 <= max_blocks: the step that would not fit fails with one line naming
    max_blocks (the reference flushed its cache there without a word); so does a context too long."""
    mb = tiny_models.configs.world_model.transformer_config.max_blocks
    env = ImaginationEnv(tiny_models.tokenizer, tiny_models.world_model, sample=False)
    td = env.reset(context(tiny_models))  # L + 1 = 3 context frames: mb - 2 steps fit
    actions = torch.zeros(B, dtype=torch.long)
    for _ in range(mb - L):
        td = env.step(td.exclude(keys.CONTEXT).set(keys.ACTION, actions))["next"]
    with pytest.raises(ValueError, match=rf"max_blocks={mb} .*context frames \+ horizon - 1 must be at most {mb}"):
        env.step(td.set(keys.ACTION, actions))
    g = torch.Generator().manual_seed(0)
    long = TensorDict(pixels=torch.randint(0, 256, (B, mb + 1, 3, 64, 64), dtype=torch.uint8, generator=g),
                      action=torch.zeros(B, mb, dtype=torch.long), batch_size=[B])
    with pytest.raises(ValueError, match=rf"a context of {mb + 1} frames .* max_blocks={mb}"):
        env.reset(context=long)


def test_a_context_that_ends_on_padding_is_refused(tiny_models):
    env = ImaginationEnv(tiny_models.tokenizer, tiny_models.world_model, sample=False)
    ctx = context(tiny_models).get(keys.CONTEXT)
    mask = torch.ones(B, L + 1, dtype=torch.bool)
    env.reset(context=ctx.clone().set(keys.MASK_PADDING, mask))  # left padding is fine
    mask[1, -1] = False
    with pytest.raises(ValueError, match=r"ends on a padding frame in 1 of 3 rows .*can_sample_beyond_end=False"):
        env.reset(context=ctx.clone().set(keys.MASK_PADDING, mask))
