"""What does a run's world model see, and can its imagination pay the policy? Three probes of a run folder.

    python benchmarks/world_model_probe.py RUN_DIR                  # a run folder (config/, checkpoints/, dataset/)
    python benchmarks/world_model_probe.py RUN_DIR --split test --windows 500 --png dreams.png

The policy learns only from what the world model imagines. Each probe reads the run's
``checkpoints/last.pt`` and its stored episodes (read only: a running training is left alone), on
windows drawn with a fixed seed:

1. **Reconstruction**: the tokenizer encodes and decodes real transitions (o_t, a_t, o_t+1). It
   reports the mean absolute pixel error over whole frames and over the pixels that changed between
   o_t and o_t+1 (by more than 0.05 in some channel): the moving sprites, which a blurry tokenizer
   loses while its whole-frame error stays small (they are a few pixels of a mostly static frame).
2. **Imagined rewards**: the world model imagines ``imagination_horizon`` steps from
   ``burn_in_length`` + 1 real frames, fed the actions the episode really took next (open loop), with
   sampled tokens, rewards and ends as in training (an imagined end does not stop the count: the real
   stretch goes on too). It reports the rewards (of size 0.5 or more: every Atari reward, Crafter's
   achievements) per 1,000 steps in the real stretches and in their imagined twins. A world model that
   cannot draw what pays (enemies, a ball) imagines far fewer rewards than the real episodes hold, and
   then the imagined returns carry no signal for the policy. A second line splits both by the step after
   the context: the first imagined frame is decoded from a real one, later ones from imagined ones, so a
   tokenizer that loses the sprites pays at the first step and not after. ``--png`` saves the first 8 windows: each real row above its imagined twin.
3. **Reward head**: the world model runs teacher-forced (as in its training) over windows of
   ``params.training.world_model.sequence_length`` steps, and the reward predicted for each window's
   last step is read at that step's action position (the frames and actions up to it, not the next
   frame). For windows ending on a rewarded step and as many ending on an unrewarded one: ``P(r≠0)``
   (sign heads: 1 − P(class 0)), ``abs E r`` (sign heads: P(+1) − P(−1); two-hot heads: the
   expectation), and the ``spread`` of E r when the last action is replaced by each of the others
   (largest minus smallest), mean and median. A world model that learned its game's rewards gives
   rewarded steps a far higher P(r≠0) than unrewarded ones, and a spread well above zero where the
   action decides the reward.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from tensordict import TensorDictBase

if __package__ in (None, ""):  # run as a file: import the sibling scripts as the benchmarks package
    sys.path[0] = str(Path(__file__).resolve().parents[1])
from torchrl_deltairis import functional, keys
from torchrl_deltairis.envs.imagination_core import ImaginationCore
from torchrl_deltairis.modules.tokenizer import Tokenizer
from torchrl_deltairis.modules.world_model import WorldModel
from torchrl_deltairis.play.loading import PlayError, load_run
from torchrl_deltairis.play.sources import StoredEpisodes, open_stores

CHUNK = 32  # windows per forward pass
CHANGED = 0.05  # a pixel "changed" between two frames when some channel moved by more than this
PAID = 0.5  # probe 2 counts the steps whose reward is at least this large: every Atari reward (a sign head
# imagines -1, 0 or +1) and Crafter's achievements (a two-hot head's expectation is never exactly 0)


@dataclass
class RewardHead:
    """What the world model predicts at the last step of ``windows`` windows (probe 3)."""

    windows: int
    p_nonzero: float  # nan for a two-hot head
    abs_reward: float
    spread_mean: float
    spread_median: float


def windows_of(store: StoredEpisodes, length: int, count: int, seed: int = 0,
               by_reward: bool = True) -> dict[str, list[TensorDictBase]]:
    """Windows of ``length`` consecutive steps inside one episode, up to ``count`` of each kind, drawn
    uniformly with ``seed``: keyed by whether their last step was rewarded (``"rewarded"``,
    ``"unrewarded"``) or, without ``by_reward``, all of one kind (``"all"``)."""
    ends: dict[str, list[tuple[int, int]]] = {"rewarded": [], "unrewarded": []} if by_reward else {"all": []}
    for episode in range(len(store)):
        rewards = store.episode(episode).get(keys.REWARD)
        for t in range(length - 1, rewards.numel()):
            kind = ("rewarded" if rewards[t] != 0 else "unrewarded") if by_reward else "all"
            ends[kind].append((episode, t))
    rng = random.Random(seed)
    picked = {kind: sorted(rng.sample(found, min(count, len(found)))) for kind, found in ends.items()}
    return {kind: [store.episode(e)[t - length + 1: t + 1] for e, t in found] for kind, found in picked.items()}


def stacked(windows: list[TensorDictBase]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frames in [0, 1] ``[N, T, C, H, W]``, actions ``[N, T]`` and rewards ``[N, T]`` of the windows."""
    return (functional.pixels_to_float(torch.stack([w.get(keys.PIXELS) for w in windows])),
            torch.stack([w.get(keys.ACTION) for w in windows]), torch.stack([w.get(keys.REWARD) for w in windows]))


@torch.no_grad()
def reconstruction_errors(tokenizer: Tokenizer, windows: list[TensorDictBase]) -> tuple[float, float]:
    """Mean absolute error of the tokenizer's reconstructions of the windows' transitions: over whole
    frames, and over the pixels that changed between the two frames (nan if none did)."""
    whole, changed, num_changed = 0.0, 0.0, 0
    for start in range(0, len(windows), CHUNK):
        frames, actions, _ = stacked(windows[start: start + CHUNK])
        error = (tokenizer.encode_decode(frames[:, :-1], actions[:, :-1], frames[:, 1:]) - frames[:, 1:]).abs()
        moved = (frames[:, 1:] - frames[:, :-1]).abs().amax(dim=2, keepdim=True).gt(CHANGED).expand_as(error)
        whole += error.sum().item()
        changed += error[moved].sum().item()
        num_changed += int(moved.sum())
    total = sum(w.batch_size[0] - 1 for w in windows) * windows[0].get(keys.PIXELS)[0].numel()
    return whole / total, changed / num_changed if num_changed else float("nan")


@torch.no_grad()
def open_loop(core: ImaginationCore, windows: list[TensorDictBase], burn_in: int,
              seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Imagines each window past its first ``burn_in`` + 1 frames with the actions it really took (probe 2).

    Returns the real and the imagined rewards ``[N, H]`` of the H = len - burn_in - 1 steps, and the
    imagined frames uint8 ``[N, H + 1, C, H, W]`` (the last real context frame first)."""
    core.generator = torch.Generator().manual_seed(seed)
    frames, actions, rewards = stacked(windows)
    core.reset(frames[:, : burn_in + 1], actions[:, :burn_in])
    frame = torch.stack([w.get(keys.PIXELS)[burn_in] for w in windows])  # uint8, as imagined frames are
    imagined, dreamt = [], [frame]
    for t in range(burn_in, actions.size(1) - 1):
        frame, reward, _ = core(frame, actions[:, t])
        imagined.append(reward)
        dreamt.append(frame)
    return rewards[:, burn_in:-1], torch.stack(imagined, dim=1), torch.stack(dreamt, dim=1)


def rewards_by_step(real: torch.Tensor, imagined: torch.Tensor) -> str:
    """Rewards per 1,000 steps at each step of the open loop ``[N, H]``: where imagination stops paying
    (the first step decodes from a real frame, later ones from imagined frames)."""
    per_step = [1000 * x.abs().ge(PAID).float().mean(0) for x in (real, imagined)]
    return " ".join(f"{k + 1}: {r:.0f}/{i:.0f}" for k, (r, i) in enumerate(zip(*(x.tolist() for x in per_step))))


@torch.no_grad()
def predicted_rewards(tokenizer: Tokenizer, world_model: WorldModel, windows: list[TensorDictBase],
                      last_actions: Sequence[int | None] = (None,)) -> tuple[torch.Tensor, torch.Tensor]:
    """``(E r, P(r≠0))`` ``[N, len(last_actions)]`` predicted for each window's last step, with each of
    ``last_actions`` in place of its stored action (``None``: the stored one); P(r≠0) is nan for a
    two-hot head. The tokens do not depend on the last action: each window's are computed once."""
    expected, nonzero = [], []
    for start in range(0, len(windows), CHUNK):
        frames, actions, _ = stacked(windows[start: start + CHUNK])
        tokens = tokenizer(frames[:, :-1], actions[:, :-1], frames[:, 1:], update_codebook=False).tokens
        chunk_expected, chunk_nonzero = [], []
        for action in last_actions:
            if action is not None:
                actions = actions.clone()
                actions[:, -1] = action
            sequence = world_model.training_sequence(frames, actions, tokens)
            logits = world_model(sequence).logits_rewards[:, -1].float()
            if world_model.config.reward_head == "two_hot":
                chunk_expected.append(functional.two_hot_expectation(logits))
                chunk_nonzero.append(torch.full_like(chunk_expected[-1], float("nan")))
            else:
                p = logits.softmax(-1)  # classes -1, 0, +1
                chunk_expected.append(p[:, 2] - p[:, 0])
                chunk_nonzero.append(1 - p[:, 1])
        expected.append(torch.stack(chunk_expected, dim=1))
        nonzero.append(torch.stack(chunk_nonzero, dim=1))
    return torch.cat(expected), torch.cat(nonzero)


def reward_head(tokenizer: Tokenizer, world_model: WorldModel, windows: list[TensorDictBase]) -> RewardHead:
    if not windows:
        nan = float("nan")
        return RewardHead(0, nan, nan, nan, nan)
    num_actions = world_model.act_emb.weight.shape[0]
    expected, nonzero = predicted_rewards(tokenizer, world_model, windows, (None, *range(num_actions)))
    per_action = expected[:, 1:]  # [N, A]
    spread = per_action.max(1).values - per_action.min(1).values
    return RewardHead(len(windows), nonzero[:, 0].mean().item(), expected[:, 0].abs().mean().item(),
                      spread.mean().item(), spread.median().item())


def save_sheet(rows: list[torch.Tensor], path: Path, scale: int) -> None:
    """Rows of uint8 frames side by side (``[C, H, W·n]`` each), one above the other, as a PNG ``scale``
    times larger (nearest neighbour)."""
    sheet = torch.cat(rows, dim=-2).permute(1, 2, 0).numpy()
    Image.fromarray(sheet).resize((scale * sheet.shape[1], scale * sheet.shape[0]), Image.NEAREST).save(path)


def dream_sheet(windows: list[TensorDictBase], dreamt: torch.Tensor, burn_in: int, path: Path) -> None:
    """Each window's real frames from its last context frame on, above the imagined ones (8 windows)."""
    rows = []
    for window, dream in zip(windows[:8], dreamt[:8]):
        real = window.get(keys.PIXELS)[burn_in:]
        rows += [torch.cat(list(real), dim=-1), torch.cat(list(dream), dim=-1)]
    save_sheet(rows, path, scale=2)


def check_output_folders(parser: argparse.ArgumentParser, args: argparse.Namespace, *flags: str) -> None:
    """Before any work: the files these options name must go into folders that exist."""
    for flag in flags:
        path = getattr(args, flag)
        if path is not None and not path.resolve().parent.is_dir():
            parser.error(f"--{flag}={str(path)!r}: its folder does not exist")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a run folder")
    parser.add_argument("--windows", type=int, default=300, help="windows of each probe (default 300)")
    parser.add_argument("--split", choices=("train", "test"), default="train", help="which stored episodes")
    parser.add_argument("--png", type=Path, default=None, help="save real and imagined frames here")
    args = parser.parse_args(argv)
    if args.windows < 1:
        parser.error(f"--windows={args.windows}; expected a positive count")
    check_output_folders(parser, args, "png")
    stores = open_stores(args.run_dir)
    if args.split not in stores:
        parser.error(f"{args.run_dir / 'dataset' / args.split} holds no episodes; expected a run folder with "
                     "its stored episodes")
    try:
        loaded = load_run(args.run_dir, torch.device("cpu"))
    except PlayError as err:
        parser.error(str(err))
    params, store, models = loaded.config["params"], stores[args.split], loaded.models
    burn_in, horizon = int(params["actor_critic"]["burn_in_length"]), int(params["actor_critic"]["imagination_horizon"])
    print(f"{args.run_dir} ({args.split} episodes)")

    dreams = windows_of(store, burn_in + 1 + horizon, args.windows, by_reward=False)["all"]
    if not dreams:
        parser.error(f"no stored episode is {burn_in + 1 + horizon} steps long (burn-in + 1 + horizon)")
    whole, changed = reconstruction_errors(models.tokenizer, dreams)
    print(f"1. reconstruction ({len(dreams)} windows): mean absolute error {whole:.4f} over whole frames, "
          f"{changed:.4f} over the pixels that changed")
    core = ImaginationCore(models.tokenizer, models.world_model, sample=True)
    real, imagined, dreamt = open_loop(core, dreams, burn_in)
    print(f"2. imagined rewards ({len(dreams)} windows of {horizon} steps, the real actions): "
          f"{1000 * real.abs().ge(PAID).float().mean().item():.1f} rewards per 1,000 real steps, "
          f"{1000 * imagined.abs().ge(PAID).float().mean().item():.1f} per 1,000 imagined steps")
    print(f"   by step after the context, real / imagined: {rewards_by_step(real, imagined)}")
    if args.png is not None:
        dream_sheet(dreams, dreamt, burn_in, args.png)
        print(f"   real (above) and imagined frames: {args.png}")

    length = int(params["training"]["world_model"]["sequence_length"])
    print(f"3. reward head (windows of {length} steps, the reward of the last step):")
    print("| last step | windows | P(r≠0) | abs E r | spread over actions (mean / median) |")
    print("|---|---|---|---|---|")
    for kind, windows in windows_of(store, length, args.windows).items():
        p = reward_head(models.tokenizer, models.world_model, windows)
        print(f"| {kind} | {p.windows} | {p.p_nonzero:.3f} | {p.abs_reward:.3f} | "
              f"{p.spread_mean:.3f} / {p.spread_median:.3f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
