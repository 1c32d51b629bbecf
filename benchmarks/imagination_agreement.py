"""How often greedy bf16 imagination picks the tokens fp32 imagination picks, on the parity fixtures
(the reference's weights and contexts, tests/data), by which convolutions run in bf16.

    python benchmarks/imagination_agreement.py                  # every scope, both fixtures, ~1 min on a CPU
    python benchmarks/imagination_agreement.py --formats contiguous auto

The measure (tests/test_imagination_precision.py asserts argued bounds instead): from every context of the fixtures'
episodes, 12 imagined steps with random actions; before each step the bf16 core gets the fp32 core's
KV cache and the fp32 frame, so that a step differs only by what bf16 changed within it and in the frame
it decoded the step before; the share of the 4 greedy tokens of steps 2-12 that agree (a 99 % bar kept
the option opt-in; greedy agreement is a poor yardstick for tokens that training samples). A second
table gives the relative differences of the actor-critic's loss terms between fp32 and bf16 imagination
from the fixtures' contexts (measured 0.08 / 0.29 for loss_actions on an AMD EPYC / an Intel Xeon with
AMX, ~1e-4 and ~0.01 for the entropy and value terms; the trajectories part ways, see the tests).

Scopes (which convolutions run under bf16 autocast in each imagined step):
- ``option``: what ``params.training.imagination_bf16`` does (``ImaginationCore(autocast_dtype=bf16)``):
  the decode (the tokenizer's frame CNN and decoder) and the world model's frame embedding;
- ``decode``: the decode only (the world model embeds the decoded frame in fp32);
- ``decoder``: the tokenizer's decoder only;
- ``frame_cnn``: the tokenizer's frame CNN only;
- ``embedding``: the world model's frame embedding only (the frame is decoded in fp32);
- ``fp32_layout``: nothing in bf16, but the second core's convolutions in the other memory format (NCHW
  if the models run NHWC, else NHWC): how much fp32's own rounding moves the tokens.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import torch

from tensordict import TensorDict
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_deltairis import keys
from torchrl_deltairis.checkpoint import read_torch_file
from torchrl_deltairis.envs.imagination import ImaginationCore, ImaginationEnv, imagine, to_uint8_frames
from torchrl_deltairis.modules.convnet import _ImageNet
from torchrl_deltairis.modules.models import configure_execution, resolve_execution
from torchrl_deltairis.objectives.actor_critic_loss import ImaginationActorCriticLoss
from torchrl_deltairis.objectives.loss_slot import ActorCriticLossConfig
from torchrl_deltairis.policy import make_actor, recurrent_state_spec
from torchrl_deltairis.reference import configs_from_reference, load_reference_checkpoint

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
STEPS = 12
SCOPES = {"option": ("tokenizer.frame_cnn", "tokenizer.decoder", "world_model.frame_cnn"),  # the core's own autocast
          "decode": ("tokenizer.frame_cnn", "tokenizer.decoder"),
          "decoder": ("tokenizer.decoder",), "frame_cnn": ("tokenizer.frame_cnn",),
          "embedding": ("world_model.frame_cnn",), "fp32_layout": ()}


@contextlib.contextmanager
def bf16_parts(models: torch.nn.Module, paths: tuple[str, ...]):
    """Runs the modules at ``paths`` under bf16 autocast (fp32 outputs), the rest as it is."""
    patched = []
    for path in paths:
        module = models.get_submodule(path)

        def forward(*args, _inner=module.forward, **kwargs):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return _inner(*args, **kwargs).float()

        module.forward = forward
        patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward


@contextlib.contextmanager
def other_layout(models: torch.nn.Module):
    """Runs every frame CNN in the other memory format: NCHW where it was NHWC (auto, channels_last)."""
    nets = [m for m in models.modules() if isinstance(m, _ImageNet)]
    before = [net.memory_format for net in nets]
    for net in nets:
        net.memory_format = "contiguous" if net.memory_format in ("auto", "channels_last") else "channels_last"
    try:
        yield
    finally:
        for net, memory_format in zip(nets, before):
            net.memory_format = memory_format


def _copy_history(dst: ImaginationCore, src: ImaginationCore) -> None:
    for name in ("keys", "values", "length"):
        getattr(dst.cache, name).copy_(getattr(src.cache, name))
    dst.cache.size = src.cache.size


def teacher_forced(models, obs: torch.Tensor, act: torch.Tensor, scope: str = "option", seed: int = 0):
    """Per imagined step and row, the greedy tokens of an fp32 core and of a core with ``scope`` in bf16
    given the same history (see the module docstring), and the frames they decode: ``(tokens, frames)``,
    dicts by ``"fp32"`` / ``"bf16"`` of ``[contexts, steps, B, K]`` and ``[contexts * steps, B, C, H, W]``."""
    burn_in = models.configs.actor_critic_training["burn_in_length"]
    fp32 = ImaginationCore(models.tokenizer, models.world_model, sample=False)
    bf16 = ImaginationCore(models.tokenizer, models.world_model, sample=False,
                           autocast_dtype=torch.bfloat16 if scope == "option" else None)
    in_bf16 = {"option": contextlib.nullcontext, "fp32_layout": lambda: other_layout(models)}.get(
        scope, lambda: bf16_parts(models, SCOPES[scope]))
    picked: list[torch.Tensor] = []
    hook = models.world_model.head_latents.head_module.register_forward_hook(
        lambda module, inputs, out: picked.append(out.float().argmax(-1)))
    g = torch.Generator().manual_seed(seed)
    tokens, frames = {"fp32": [], "bf16": []}, {"fp32": [], "bf16": []}
    try:
        for start in range(obs.size(1) - burn_in):  # every context of the fixture's episodes
            context, actions = to_uint8_frames(obs[:, start:start + burn_in + 1]), act[:, start:start + burn_in]
            fp32.reset(context, actions), bf16.reset(context, actions)
            frame = context[:, -1]
            for _ in range(STEPS):
                action = torch.randint(models.configs.world_model.num_actions, (obs.size(0),), generator=g)
                _copy_history(bf16, fp32)
                for name, core, precision in (("fp32", fp32, contextlib.nullcontext), ("bf16", bf16, in_bf16)):
                    picked.clear()
                    with precision():
                        next_frame, _, _ = core(frame, action)
                    tokens[name].append(torch.stack(picked, dim=1))
                    frames[name].append(next_frame)
                frame = frames["fp32"][-1]
    finally:
        hook.remove()
    return ({k: torch.stack(v).unflatten(0, (-1, STEPS)) for k, v in tokens.items()},
            {k: torch.stack(v) for k, v in frames.items()})


def agreement(models, obs: torch.Tensor, act: torch.Tensor, scope: str = "option") -> float:
    """Share of the greedy tokens of imagined steps 2-12 on which the bf16 core agrees with fp32's (the
    first step's tokens see no bf16 frame yet)."""
    tokens, _ = teacher_forced(models, obs, act, scope)
    return (tokens["bf16"][:, 1:] == tokens["fp32"][:, 1:]).float().mean().item()


def loss_differences(models, obs: torch.Tensor, act: torch.Tensor) -> dict[str, float]:
    """Relative differences of the reference objective's terms between fp32 and bf16 imagination, greedy
    policy and world model from the fixture's context (trajectories that part ways as above)."""
    training = models.configs.actor_critic_training
    burn_in = training["burn_in_length"]
    config = ActorCriticLossConfig(gamma=training["gamma"], lambda_=training["lambda_"],
                                   entropy_weight=training["entropy_weight"])
    context = TensorDict({keys.PIXELS: to_uint8_frames(obs[:, :burn_in + 1]), keys.ACTION: act[:, :burn_in]},
                         batch_size=obs.shape[:1])
    losses = {}
    for dtype in (None, torch.bfloat16):
        env = ImaginationEnv(models.tokenizer, models.world_model, sample=False, autocast_dtype=dtype,
                             policy_state_spec=recurrent_state_spec(models.configs.actor_critic.lstm_dim))
        with set_exploration_type(ExplorationType.MODE):
            rollout = imagine(env, make_actor(models.actor_critic.model), models.actor_critic, context,
                              training["imagination_horizon"])
        out = ImaginationActorCriticLoss(models.actor_critic, config)(rollout)
        losses[dtype] = {k: out.get(k).item() for k in ("loss_actions", "loss_entropy", "loss_values")}
    return {k: abs(losses[torch.bfloat16][k] - v) / abs(v) for k, v in losses[None].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scopes", nargs="+", default=list(SCOPES), choices=list(SCOPES))
    parser.add_argument("--formats", nargs="+", default=["auto"], choices=["auto", "contiguous", "channels_last"],
                        help="params.common.memory_format of the convolutions")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| fixture | memory format | scope | same greedy tokens, steps 2-12 |\n|---|---|---|---|")
    for name in ("crafter_small", "atari_small"):
        data = read_torch_file(str(DATA / f"{name}.pt"), "the parity fixture")
        models = load_reference_checkpoint(data["state_dict"], configs_from_reference(data["config"]))
        obs, act = data["inputs"]["observations"], data["inputs"]["actions"]
        for memory_format in args.formats:
            configure_execution(models, resolve_execution("cpu", memory_format))
            for scope in args.scopes:
                share = agreement(models, obs, act, scope)
                print(f"| {name} | {memory_format} | {scope} | {100 * share:.1f} % |", flush=True)
    print("\n| fixture | relative difference of the loss terms, bf16 against fp32 imagination |\n|---|---|")
    for name in ("crafter_small", "atari_small"):
        data = read_torch_file(str(DATA / f"{name}.pt"), "the parity fixture")
        models = load_reference_checkpoint(data["state_dict"], configs_from_reference(data["config"]))
        configure_execution(models, resolve_execution("cpu"))
        diffs = loss_differences(models, data["inputs"]["observations"], data["inputs"]["actions"])
        print(f"| {name} | " + ", ".join(f"{k} {v:.3f}" for k, v in diffs.items()) + " |", flush=True)


if __name__ == "__main__":
    main()
