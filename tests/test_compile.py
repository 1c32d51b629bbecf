"""The compiled path (`params.common.compile`, modules/models.py `compile_models`) gives eager's results:
the same greedy imagined tokens, rewards and ends, frames within a level of rounding, and the same
tokenizer, world-model and actor-critic losses and gradients (within 1e-5). The graphs are captured
and differentiated as a run does (TorchDynamo + AOTAutograd, backend "aot_eager"); the tokenizer's
step also goes through TorchInductor's generated CPU code (what `compile: true` runs), the slowest to
compile, so the other checks skip the code generation.

The models are the Atari fixture's (scalar heads, 2-layer transformer) with one-stage convnets on
16×16 frames: 16 channels widened to 32 by a residual block (GroupNorm, SiLU, 3×3 convolutions and
the 1×1 projection of its skip) and one 2× down- or upsampling, so every kind of layer the compiled
parts hold is there, and the latents (8×8), tokens and frame embeddings keep the fixture's sizes. What
compiling costs grows with the layers traced and the kernels generated, not with what it proves: on 2
cores with a cold Inductor cache, the fixture's five-stage 64×64 convnets took about twice as long."""

import copy

import pytest
import torch
from tensordict import TensorDict

from conftest import DATA
from torchrl_deltairis import keys
from torchrl_deltairis.envs.imagination import ImaginationEnv, imagine
from torchrl_deltairis.modules.models import COMPILED_PARTS, compile_models
from torchrl_deltairis.objectives import TokenizerLoss, WorldModelLoss
from torchrl_deltairis.objectives.loss_assembly import build_actor_critic_loss
from torchrl_deltairis.objectives.loss_slot import ActorCriticLossConfig
from torchrl_deltairis.policy import make_actor, recurrent_state_spec
from torchrl_deltairis.reference import DeltaIrisModels, configs_from_reference
from torchrl_deltairis.config import RunConfig

pytestmark = pytest.mark.slow
B, L, H = 4, 6, 5
CTX = 3  # context frames of an imagined rollout: with H steps they fit the compact world model's 8 blocks
S = 16  # frames S×S
CNN = {"num_channels": 16, "num_groups": 8, "mult": [2], "down": [1]}  # latents S / 2 = 8, as the fixture's


def compact_models(seed: int = 0) -> DeltaIrisModels:
    """The Atari fixture's models (scalar rewards and values) with compact convnets on S×S frames."""
    config = torch.load(DATA / "atari_small.pt", map_location="cpu", weights_only=True)["config"]
    config["tokenizer"]["image_size"] = config["world_model"]["image_size"] = S
    for node in (config["tokenizer"]["encoder_config"], config["tokenizer"]["decoder_config"],
                 config["tokenizer"]["frame_cnn_config"], config["world_model"]["frame_cnn_config"],
                 config["actor_critic"]["frame_encoder_config"]):
        node.update(CNN)
    torch.manual_seed(seed)
    return DeltaIrisModels(configs_from_reference(config)).eval()


def _pair(backend: str):
    """(eager, compiled) copies of the same compact models."""
    torch._dynamo.reset()
    eager = compact_models()
    compiled = compile_models(copy.deepcopy(eager), True, backend=backend)
    assert eager.state_dict().keys() == compiled.state_dict().keys()  # compiled in place: checkpoints unchanged
    yield eager, compiled
    torch._dynamo.reset()


@pytest.fixture(scope="module")
def pair():
    yield from _pair("aot_eager")


@pytest.fixture
def inductor_pair():
    yield from _pair("inductor")


def segments(models, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = models.configs.world_model.num_actions
    return TensorDict(pixels=torch.randint(0, 256, (2, L, 3, S, S), dtype=torch.uint8, generator=g),
                      action=torch.randint(0, n, (2, L), generator=g),
                      reward=torch.randint(-1, 2, (2, L), generator=g).float(),
                      terminated=torch.zeros(2, L, dtype=torch.bool), mask_padding=torch.ones(2, L, dtype=torch.bool),
                      batch_size=[2, L])


def _loss_and_grads(loss_module, params, batch):
    loss_module.train()
    torch.manual_seed(0)  # the quantizer's revival draws from it
    out = loss_module(batch)
    total = sum(v for k, v in out.items() if k.startswith("loss_"))
    grads = torch.autograd.grad(total, params, allow_unused=True)
    return out, grads


@pytest.mark.parametrize("name", ["tokenizer", "world_model"])
def test_compiled_model_losses_and_gradients_equal_eager(pair, name):
    _assert_same_model_loss(pair, name)


def test_the_inductor_compiled_tokenizer_step_equals_eager(inductor_pair):
    _assert_same_model_loss(inductor_pair, "tokenizer")


def _assert_same_model_loss(pair, name):
    results = []
    for models in pair:
        if name == "tokenizer":
            loss, params = TokenizerLoss(models.tokenizer, models.configs.tokenizer_loss), models.tokenizer
        else:
            loss = WorldModelLoss(models.world_model, models.tokenizer, models.configs.world_model_loss)
            params = models.world_model
        results.append(_loss_and_grads(loss, [p for p in params.parameters() if p.requires_grad], segments(models)))
        params.eval()
    (out_e, grads_e), (out_c, grads_c) = results
    _assert_same_losses_and_gradients(out_e, grads_e, out_c, grads_c)


def _assert_same_losses_and_gradients(out_e, grads_e, out_c, grads_c):
    """Every ``loss_*`` term within 1e-5, every gradient within 1e-4 (relative) / 1e-5 (absolute)."""
    for key in out_e.keys():
        if key.startswith("loss_"):
            torch.testing.assert_close(out_c[key], out_e[key], rtol=1e-5, atol=1e-5, msg=key)
    for ge, gc in zip(grads_e, grads_c, strict=True):
        if ge is not None:
            torch.testing.assert_close(gc, ge, rtol=1e-4, atol=1e-5)


def test_compiled_greedy_imagination_picks_the_same_tokens(pair):
    recorded = []
    for models in pair:
        tokens = []
        embed = models.tokenizer.embed_tokens
        models.tokenizer.embed_tokens = lambda t, embed=embed, tokens=tokens: tokens.append(t) or embed(t)
        env = ImaginationEnv(models.tokenizer, models.world_model, sample=False)
        g = torch.Generator().manual_seed(1)
        n = models.configs.world_model.num_actions
        ctx = TensorDict(pixels=torch.randint(0, 256, (B, CTX, 3, S, S), dtype=torch.uint8, generator=g),
                         action=torch.randint(0, n, (B, CTX - 1), generator=g), batch_size=[B])
        actions = torch.randint(0, n, (H, B), generator=g)
        td = env.reset(TensorDict({keys.CONTEXT: ctx}, batch_size=[B])).exclude(keys.CONTEXT)
        frames, rewards, ends = [], [], []
        with torch.no_grad():
            for t in range(H):
                td = env.step(td.set(keys.ACTION, actions[t]))
                frames.append(td[keys.NEXT_PIXELS])
                rewards.append(td[keys.NEXT_REWARD])
                ends.append(td[keys.NEXT_TERMINATED])
                td = td["next"].clone()
        del models.tokenizer.embed_tokens
        recorded.append((torch.stack(tokens), torch.stack(frames), torch.stack(rewards), torch.stack(ends)))
    (tok_e, fr_e, rew_e, end_e), (tok_c, fr_c, rew_c, end_c) = recorded
    assert tok_e.shape[0] == H and torch.equal(tok_c, tok_e)
    assert (fr_c.int() - fr_e.int()).abs().max() <= 1  # uint8 frames: a level of rounding at most
    assert (fr_c != fr_e).float().mean() < 1e-3
    torch.testing.assert_close(rew_c, rew_e, rtol=1e-5, atol=1e-5)
    assert torch.equal(end_c, end_e)


def _imagine_steps(env, models, resets: int = 2, seed: int = 1, context: int = CTX):
    """``resets`` times: a reset from a random context of ``context`` frames, then H steps of random
    actions; the frames, rewards and ends of every step. (3 frames and H steps fit in the compact world
    model's 8 blocks: no step flushes the cache, as in training.)"""
    g = torch.Generator().manual_seed(seed)
    n = models.configs.world_model.num_actions
    out = []
    with torch.no_grad():
        for _ in range(resets):
            ctx = TensorDict(pixels=torch.randint(0, 256, (B, context, 3, S, S), dtype=torch.uint8, generator=g),
                             action=torch.randint(0, n, (B, context - 1), generator=g), batch_size=[B])
            td = env.reset(context=ctx)
            for t in range(H):
                td = env.step(td.set(keys.ACTION, torch.randint(0, n, (B,), generator=g)))
                out.append((td[keys.NEXT_PIXELS], td[keys.NEXT_REWARD], td[keys.NEXT_TERMINATED]))
                td = td["next"].clone()
    return [torch.stack(x) for x in zip(*out)]


@pytest.mark.parametrize("sample", [False, True], ids=["greedy", "sampled"])
def test_the_compiled_imagination_step_is_two_static_graphs_and_gives_eager_draws(sample):
    """``compile_step`` compiles the whole imagined step (``fullgraph``: no graph break, so no data-dependent
    Python branching and no host sync inside) as two graphs, the first step after a reset and every later
    one, with static shapes: its KV cache position lives in a device tensor, so no step re-captures. The
    draws are eager's, greedy or sampled from the same seed (the noise is drawn before the step)."""
    models = compact_models()
    graphs = []

    def counting_backend(gm, example_inputs):  # runs the captured FX graph as is, and counts it
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    runs = []
    for compile_step in (False, True):
        env = ImaginationEnv(models.tokenizer, models.world_model, sample=sample, compile_step=compile_step,
                             compile_backend=counting_backend)
        env.set_seed(7)
        runs.append(_imagine_steps(env, models))
    torch._dynamo.reset()
    assert len(graphs) == 2, f"{len(graphs)} graphs for {2 * H} steps after 2 resets"
    (frames_e, rewards_e, ends_e), (frames_c, rewards_c, ends_c) = runs
    assert torch.equal(frames_c, frames_e) and torch.equal(ends_c, ends_e)
    torch.testing.assert_close(rewards_c, rewards_e, rtol=0, atol=1e-6)
    if sample:  # the sampled run differs from the greedy one: the noise reached the draws
        greedy = _imagine_steps(ImaginationEnv(models.tokenizer, models.world_model, sample=False), models)
        assert not torch.equal(greedy[0], frames_e)


def test_compiled_actor_critic_loss_equals_eager(pair):
    results = []
    for models in pair:
        spec = recurrent_state_spec(models.configs.actor_critic.lstm_dim)
        env = ImaginationEnv(models.tokenizer, models.world_model, sample=True, policy_state_spec=spec)
        env.set_seed(0)
        loss = build_actor_critic_loss(models.actor_critic, ActorCriticLossConfig(gamma=0.995, entropy_weight=0.002))
        g = torch.Generator().manual_seed(2)
        n = models.configs.world_model.num_actions
        ctx = TensorDict(pixels=torch.randint(0, 256, (B, CTX, 3, S, S), dtype=torch.uint8, generator=g),
                         action=torch.randint(0, n, (B, CTX - 1), generator=g), batch_size=[B])
        torch.manual_seed(3)  # the policy's samples
        rollout = imagine(env, make_actor(models.actor_critic.model), models.actor_critic, ctx, H)
        out = loss(rollout)
        total = sum(v for k, v in out.items() if k.startswith("loss_"))
        params = list(models.actor_critic.model.parameters())
        results.append((rollout, out, torch.autograd.grad(total, params, allow_unused=True)))
    (roll_e, out_e, grads_e), (roll_c, out_c, grads_c) = results
    assert torch.equal(roll_c[keys.ACTION], roll_e[keys.ACTION])  # the same imagined trajectories
    _assert_same_losses_and_gradients(out_e, grads_e, out_c, grads_c)


def test_the_compiled_parts_are_compiled_and_modes_are_checked(pair):
    _, compiled = pair
    assert all(compiled.get_submodule(path)._compiled_call_impl is not None for path in COMPILED_PARTS)
    with pytest.raises(ValueError, match=r"params.common.compile='fast'; expected one of"):
        compile_models(compact_models(), "fast")


@pytest.mark.parametrize("mode", [False, "reduce-overhead"])
def test_a_run_compiles_its_imagination_step_when_configured(tmp_path, mode):
    """``params.common.compile`` reaches the imagination env that the actor-critic trains in."""
    from hydra import compose, initialize_config_dir

    from test_validation import ROOT
    from torchrl_deltairis.build.components import make_actor_critic_component
    from torchrl_deltairis.build.models import make_models
    from torchrl_deltairis.data.counts import EpisodeCounts
    from torchrl_deltairis.data.store import EpisodeStore

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=["params=smoke", f"params.common.compile={mode}"])
    models = make_models(RunConfig.from_hydra(cfg), 17, torch.device("cpu"))
    parts = make_actor_critic_component(RunConfig.from_hydra(cfg), models, EpisodeStore(tmp_path / "store", capacity=100), EpisodeCounts(),
                                        torch.device("cpu"), 0)
    assert (parts.env.core.compiled_step is not None) == bool(mode)
    torch._dynamo.reset()
