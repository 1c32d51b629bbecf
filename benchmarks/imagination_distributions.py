"""How far bf16 imagination moves the world model's predicted *distributions*, next to how far one
training update moves them: the yardstick for mixed precision in a model whose tokens are sampled.

    python benchmarks/imagination_distributions.py                 # both parity fixtures, ~1 min on a CPU
    python benchmarks/imagination_distributions.py --threads 1

Greedy-token agreement (``imagination_agreement.py``) counts near-ties that any rounding flips and that
sampling never sees. Here, from every context of the parity fixtures' episodes (the reference's weights),
an fp32 core imagines steps with random actions (12, or as many as the world model's context
holds), and before each step a second core gets the first
one's KV cache and frame, so the two predict from the same history. For each imagined step this gives

* the total-variation distance ``½ Σ |p − q|`` between the two cores' next-token distributions (the first
  token of the step, and the later ones where both cores picked the same tokens before them, so that the
  two condition on the same prefix), averaged over every such prediction;
* the largest difference of the reward-class and end probabilities.

The second core is, in turn:

* ``bf16``: the same models with ``params.training.imagination_bf16`` (the decode and the world model's
  frame embedding under bf16 autocast);
* ``fp32 layout``: the same models in fp32 with the convolutions in the other memory format (fp32's own
  rounding);
* ``one update``: fp32 models after **one** Adam step of the world model's loss on the fixture's
  episodes at the reference's learning rate, 1e-4 (what training changes between two consecutive
  imagination batches).

The argument for the test (``tests/test_imagination_precision.py``): a change of the predicted
distributions smaller than what one optimizer step of training makes lies within the noise training
itself injects at every step, so it cannot matter to what the agent learns; bf16 must stay below the
one-update distance on every measure.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
from pathlib import Path

import torch
from tensordict import TensorDict

if __package__ in (None, ""):  # run as a file: import the sibling scripts as the benchmarks package
    sys.path[0] = str(Path(__file__).resolve().parents[1])
from benchmarks.imagination_agreement import STEPS, _copy_history, other_layout
from torchrl_deltairis.checkpoint import read_torch_file
from torchrl_deltairis.envs.imagination import ImaginationCore, to_uint8_frames
from torchrl_deltairis.modules.models import configure_execution, resolve_execution
from torchrl_deltairis.objectives import WorldModelLoss
from torchrl_deltairis.reference import configs_from_reference, load_reference_checkpoint

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
FIXTURES = ("crafter_small", "atari_small")
REFERENCE_LEARNING_RATE = 1e-4
HEADS = ("latents", "rewards", "ends")


@contextlib.contextmanager
def head_probabilities(world_model: torch.nn.Module):
    """Collects the softmax of every call of the world model's three heads, ``{head: [tensor, ...]}``."""
    got: dict[str, list[torch.Tensor]] = {name: [] for name in HEADS}
    hooks = [getattr(world_model, f"head_{name}").head_module.register_forward_hook(
        lambda module, inputs, out, name=name: got[name].append(out.float().softmax(-1).flatten(0, -2)))
        for name in HEADS]
    try:
        yield got
    finally:
        for hook in hooks:
            hook.remove()


def load_fixture(name: str):
    data = read_torch_file(str(DATA / f"{name}.pt"), "the parity fixture")
    models = load_reference_checkpoint(data["state_dict"], configs_from_reference(data["config"]))
    configure_execution(models, resolve_execution("cpu"))
    return models, data["inputs"]


def one_update(models, inputs: dict[str, torch.Tensor], lr: float = REFERENCE_LEARNING_RATE):
    """A copy of ``models`` after one Adam step of the world model's loss on the fixture's episodes."""
    updated = copy.deepcopy(models)
    td = TensorDict(pixels=inputs["observations"], action=inputs["actions"], reward=inputs["rewards"],
                    terminated=inputs["ends"], mask_padding=inputs["mask_padding"], batch_size=inputs["actions"].shape)
    loss = WorldModelLoss(updated.world_model, updated.tokenizer, updated.configs.world_model_loss)
    optimizer = torch.optim.Adam(updated.world_model.parameters(), lr=lr)
    losses = loss(td)
    sum(losses[k] for k in ("loss_latents", "loss_rewards", "loss_ends")).backward()
    optimizer.step()
    return updated.eval()


def paired_distances(first, second, obs: torch.Tensor, act: torch.Tensor, burn_in: int,
                     second_context=contextlib.nullcontext, seed: int = 0,
                     starts: list[int] | None = None) -> dict[str, float]:
    """Mean TV of the next-token distributions and the largest reward / end probability differences of
    the core ``second`` against ``first`` along ``first``'s imagined path (module docstring), from the
    contexts that begin at ``starts`` (default: every one of the fixture's episodes)."""
    g = torch.Generator().manual_seed(seed)
    tv_sum, tv_count, reward_max, end_max = 0.0, 0, 0.0, 0.0
    num_actions = first.world_model.config.num_actions
    # context frames + steps - 1 must fit the world model's context (the fixtures' holds 8 frames)
    steps = min(STEPS, first.world_model.config.transformer_config.max_blocks - burn_in)
    for start in range(obs.size(1) - burn_in) if starts is None else starts:
        context, actions = to_uint8_frames(obs[:, start:start + burn_in + 1]), act[:, start:start + burn_in]
        first.reset(context, actions), second.reset(context, actions)
        frame = context[:, -1]
        for _ in range(steps):
            action = torch.randint(num_actions, (obs.size(0),), generator=g)
            _copy_history(second, first)
            with head_probabilities(first.world_model) as p:
                next_frame, _, _ = first(frame, action)
            with second_context(), head_probabilities(second.world_model) as q:
                second(frame, action)
            same_prefix = torch.ones(obs.size(0), dtype=torch.bool)
            for pk, qk in zip(p["latents"], q["latents"]):  # one call per token of the step
                tv = 0.5 * (pk - qk).abs().sum(-1)
                tv_sum += tv[same_prefix].sum().item()
                tv_count += int(same_prefix.sum())
                same_prefix &= pk.argmax(-1) == qk.argmax(-1)
            reward_max = max(reward_max, max((a - b).abs().max().item() for a, b in zip(p["rewards"], q["rewards"])))
            end_max = max(end_max, max((a - b).abs().max().item() for a, b in zip(p["ends"], q["ends"])))
            frame = next_frame
    return {"token_tv": tv_sum / max(tv_count, 1), "reward_prob": reward_max, "end_prob": end_max}


def measure(name: str, starts: list[int] | None = None) -> dict[str, dict[str, float]]:
    """The three comparisons of the module docstring on one parity fixture (``starts``: as
    :func:`paired_distances`)."""
    models, inputs = load_fixture(name)
    obs, act = inputs["observations"], inputs["actions"]
    burn_in = models.configs.actor_critic_training["burn_in_length"]

    def core(m, dtype=None):
        return ImaginationCore(m.tokenizer, m.world_model, sample=False, autocast_dtype=dtype)

    fp32 = core(models)
    with torch.no_grad():
        rows = {"bf16": paired_distances(fp32, core(models, torch.bfloat16), obs, act, burn_in, starts=starts),
                "fp32 layout": paired_distances(fp32, core(models), obs, act, burn_in,
                                                lambda: other_layout(models), starts=starts)}
    updated = one_update(models, inputs)
    with torch.no_grad():
        rows["one update"] = paired_distances(fp32, core(updated), obs, act, burn_in, starts=starts)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| fixture | second core | mean TV of next-token distributions | max reward-prob diff | max end-prob diff |")
    print("|---|---|---|---|---|")
    for name in FIXTURES:
        for label, row in measure(name).items():
            print(f"| {name} | {label} | {row['token_tv']:.2e} | {row['reward_prob']:.2e} | {row['end_prob']:.2e} |",
                  flush=True)


if __name__ == "__main__":
    main()
