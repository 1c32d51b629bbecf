"""What ``params.training.imagination_bf16`` (bf16 autocast for imagination's convolutions: decoding each
imagined frame and embedding it) changes, on the parity fixtures' reference weights and contexts, with
bounds that follow from what bf16 is, not from one machine's measurement.

- Nothing before its first convolution: the first imagined step's reward, end and token
  distributions come from the fp32 burn-in and the fp32 transformer, so they are bit for bit fp32's.
- Frames at the resolution of bf16: bf16 keeps 8 significant bits, the resolution of the 8-bit frames
  themselves, so each of the decoder's roundings moves a pixel by about one 1/255 level; the decoder's
  layers add such errors up. Bound: an imagined frame decoded in bf16 lies on average within 4 levels
  of the same frame decoded in fp32 from the same inputs.
- Rounding, not content: given the same history but the last frame, the world model's next-token
  distributions after the bf16 frame lie closer (in total variation) to those after the fp32 frame
  than a quarter of the distance made by another context's frame in its place. That is what the
  option must keep to be harmless: its noise well below the signal the world model reads from a frame
  (a random ±1-level dither is no yardstick: the frame CNN averages independent noise away, and its
  GroupNorm removes a uniform brightness shift).

``python benchmarks/imagination_agreement.py`` measures the figures on a machine (greedy-token
agreement, pixels moved, the actor-critic loss terms).
"""

import pytest
import torch

from test_parity import DATA
from torchrl_deltairis.checkpoint import read_torch_file
from torchrl_deltairis.envs.imagination import ImaginationCore, to_uint8_frames
from torchrl_deltairis.modules.models import configure_execution, resolve_execution
from torchrl_deltairis.reference import configs_from_reference, load_reference_checkpoint

LEVELS_BOUND = 4  # bf16 rounds at about one 1/255 level; the decoder's layers add a few such errors up
CONTENT_SHARE = 0.25  # bf16's effect on predictions at most this share of another frame's


@pytest.fixture(scope="module", params=["crafter_small", "atari_small"])
def fixture(request):
    data = read_torch_file(str(DATA / f"{request.param}.pt"), "the parity fixture")
    models = load_reference_checkpoint(data["state_dict"], configs_from_reference(data["config"]))
    configure_execution(models, resolve_execution("cpu"))  # as a run on a CPU does: NHWC, chunks of 16
    return models, data["inputs"]["observations"], data["inputs"]["actions"]


class _Recorder:
    """A draw_fn: records every draw's logits; latent draws take ``tokens`` when given (the same
    history for every core); frames are replaced by ``frame`` when given."""

    def __init__(self, tokens=None, frame=None):
        self.logits, self.kinds, self.tokens, self.frame = [], [], list(tokens or []), frame
        self.taken, self.frames = [], []

    def __call__(self, kind, x):
        if kind == "frame":
            out = to_uint8_frames(x) if self.frame is None else self.frame
            self.frames.append(out)
            return out
        self.logits.append(x.float())
        self.kinds.append(kind)
        taken = self.tokens.pop(0) if kind == "latent" and self.tokens else x.float().argmax(-1)
        self.taken.append(taken)
        return taken


def _one_step(models, context, actions, action, *, bf16=False, frame=None, tokens=None):
    draw = _Recorder(tokens, frame)
    core = ImaginationCore(models.tokenizer, models.world_model, sample=False, draw_fn=draw,
                           autocast_dtype=torch.bfloat16 if bf16 else None)
    core.reset(context, actions)
    first, _, _ = core(context[:, -1], action)
    return core, draw, first


def _contexts(models, obs, act):
    burn_in = models.configs.actor_critic_training["burn_in_length"]
    g = torch.Generator().manual_seed(0)
    last = obs.size(1) - burn_in - 1
    for start in (0, last):  # the first and the last context of the fixture's episodes (bf16 is slow on
        # CPUs without native bf16, where it is emulated)
        action = torch.randint(models.configs.world_model.num_actions, (obs.size(0),), generator=g)
        yield to_uint8_frames(obs[:, start:start + burn_in + 1]), act[:, start:start + burn_in], action


def test_nothing_before_the_first_bf16_convolution_changes(fixture):
    models, obs, act = fixture
    for context, actions, action in _contexts(models, obs, act):
        _, fp32, _ = _one_step(models, context, actions, action)
        _, bf16, _ = _one_step(models, context, actions, action, bf16=True)
        assert fp32.kinds == bf16.kinds
        for ours, theirs in zip(bf16.logits, fp32.logits):
            assert torch.equal(ours, theirs)


def test_bf16_frames_lie_within_a_few_levels_of_fp32_ones(fixture):
    models, obs, act = fixture
    for context, actions, action in _contexts(models, obs, act):
        _, _, fp32 = _one_step(models, context, actions, action)
        _, _, bf16 = _one_step(models, context, actions, action, bf16=True)
        levels = (bf16.int() - fp32.int()).abs().float()
        assert levels.mean().item() <= LEVELS_BOUND, levels.mean().item()


def _tv(p_logits, q_logits):
    return 0.5 * (p_logits.softmax(-1) - q_logits.softmax(-1)).abs().sum(-1)


def test_a_bf16_frame_moves_the_next_predictions_far_less_than_another_frame_does(fixture):
    """Next step's token distributions (fp32 world model, the same history and tokens) after the fp32
    frame, the bf16 frame, and another row's fp32 frame."""
    models, obs, act = fixture
    tv_bf16, tv_other = [], []
    for context, actions, action in _contexts(models, obs, act):
        _, _, fp32_frame = _one_step(models, context, actions, action)
        _, _, bf16_frame = _one_step(models, context, actions, action, bf16=True)
        other = fp32_frame.roll(1, dims=0)  # another context's frame
        logits = {}
        reference_tokens = None
        for name, frame in (("fp32", fp32_frame), ("bf16", bf16_frame), ("other", other)):
            core, draw, _ = _one_step(models, context, actions, action, frame=frame)
            draw.tokens = list(reference_tokens or [])
            first = len(draw.logits)
            core(frame, action)
            kinds = draw.kinds[first:]
            steps = [x for x, kind in zip(draw.logits[first:], kinds) if kind == "latent"]
            if reference_tokens is None:
                reference_tokens = [t for t, kind in zip(draw.taken[first:], kinds) if kind == "latent"]
            logits[name] = torch.stack(steps)
        tv_bf16.append(_tv(logits["bf16"], logits["fp32"]).mean())
        tv_other.append(_tv(logits["other"], logits["fp32"]).mean())
    bf16, other = torch.stack(tv_bf16).mean().item(), torch.stack(tv_other).mean().item()
    assert other > 0  # the frame moves the predictions: the yardstick is not empty
    assert bf16 <= CONTENT_SHARE * other, (bf16, other)


@pytest.mark.parametrize("name", ["crafter_small", "atari_small"])
def test_bf16_moves_the_predicted_distributions_less_than_one_training_update(name):
    """The distributional bar (benchmarks/imagination_distributions.py): given the same history, bf16
    imagination changes the next-token distributions (mean total variation), the reward-class and the
    end probabilities (largest difference) less than one Adam step of the world model's loss at the
    reference's learning rate does. Training injects a change of that size between any two imagination
    batches, so a smaller one cannot matter to what the agent learns; sampled tokens see only the
    distributions, so near-ties that flip a greedy token are no measure."""
    from benchmarks.imagination_distributions import measure

    rows = measure(name, starts=[0, 2])  # two contexts: bf16 is emulated (slow) on CPUs without it
    for key in ("token_tv", "reward_prob", "end_prob"):
        assert rows["bf16"][key] < rows["one update"][key], (key, rows)
    assert rows["one update"]["token_tv"] > 0  # the yardstick moved
