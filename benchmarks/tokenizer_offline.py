"""How fast does a preset's tokenizer learn to draw a game? Trains a fresh one on a run's stored episodes.

    python benchmarks/tokenizer_offline.py RUN_DIR env=atari_cpu params=atari_cpu --updates 2000
    python benchmarks/tokenizer_offline.py RUN_DIR env=atari_cpu params=atari_cpu \\
        +params.training.tokenizer.learning_rate=0.001 --png rec.png

A whole run is an hour on a laptop; this trains the tokenizer alone, as a run of the preset given by
the Hydra overrides would (its config, optimizer, learning rate, weight decay, gradient clipping,
batch size, segment length and precision), on CPU, on segments drawn uniformly from RUN_DIR's stored training episodes
(read only) but for every tenth episode, which is held out. Every ``--every`` updates it prints the
reconstruction error on 64 held-out windows, as ``world_model_probe.py``'s first probe measures it:
over whole frames and over the pixels that changed between the two frames (the moving sprites, which
a tokenizer that has not learned them yet draws as a blur), with the seconds spent so far. ``--png``
saves 8 held-out transitions: the frame, the next frame, its reconstruction. ``--save tok.pt`` keeps
the trained tokenizer, for a run to start from (``params.initialization.path_to_checkpoint=tok.pt
params.initialization.load_world_model=false params.initialization.load_actor_critic=false``).
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import time
from pathlib import Path

import torch
from tensordict import TensorDict

if __package__ in (None, ""):  # run as a file: import the sibling scripts as the benchmarks package
    sys.path[0] = str(Path(__file__).resolve().parents[1])
from benchmarks.runtime import compose_config
from benchmarks.world_model_probe import check_output_folders, reconstruction_errors, save_sheet, stacked
from torchrl_deltairis import keys
from torchrl_deltairis.checkpoint import read_torch_file
from torchrl_deltairis.build.components import make_component
from torchrl_deltairis.build.models import make_models
from torchrl_deltairis.config import RunConfig
from torchrl_deltairis.objectives.tokenizer_loss import TokenizerLoss
from torchrl_deltairis.play.loading import ACTION_KEY
from torchrl_deltairis.play.sources import open_stores
from torchrl_deltairis.reference import to_reference_state_dict

CPU = torch.device("cpu")
HELD_OUT = 10  # every tenth episode
EVAL_WINDOWS = 64


def segments(episodes: list, length: int, count: int, rng: random.Random) -> list:
    """``count`` windows of ``length`` steps, each in an episode drawn uniformly, at a uniform start."""
    out = []
    for _ in range(count):
        episode = rng.choice(episodes)
        start = rng.randrange(episode.batch_size[0] - length + 1)
        out.append(episode[start: start + length])
    return out


def batch_of(windows: list) -> TensorDict:
    pixels = torch.stack([w.get(keys.PIXELS) for w in windows])
    actions = torch.stack([w.get(keys.ACTION) for w in windows])
    return TensorDict({keys.PIXELS: pixels, keys.ACTION: actions,
                       keys.MASK_PADDING: torch.ones_like(actions, dtype=torch.bool)}, batch_size=actions.shape)


def reconstruction_sheet(tokenizer, windows: list, path: Path) -> None:
    frames, actions, _ = stacked(windows[:8])
    with torch.no_grad():
        rebuilt = tokenizer.encode_decode(frames[:, :1], actions[:, :1], frames[:, 1:2])
    rows = [(torch.cat([frames[i, 0], frames[i, 1], rebuilt[i, 0]], dim=-1).clamp(0, 1) * 255).round().to(torch.uint8)
            for i in range(len(frames))]
    save_sheet(rows, path, scale=4)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a run folder whose stored episodes to train on")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for train.py (the preset)")
    parser.add_argument("--updates", type=int, default=1000, help="optimizer steps (default 1000)")
    parser.add_argument("--every", type=int, default=250, help="print the held-out errors every N updates")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--png", type=Path, default=None, help="save held-out reconstructions here")
    parser.add_argument("--save", type=Path, default=None,
                        help="save the trained tokenizer here (a reference-format checkpoint of tokenizer.* keys)")
    args = parser.parse_args(argv)
    if args.updates < 1 or args.every < 1:
        parser.error(f"--updates={args.updates} --every={args.every}; expected positive counts")
    check_output_folders(parser, args, "png", "save")
    stores = open_stores(args.run_dir)
    if "train" not in stores:
        parser.error(f"{args.run_dir / 'dataset' / 'train'} holds no episodes; expected a run folder")
    run = RunConfig.from_hydra(compose_config(args.overrides))
    training = run.training.tokenizer
    store = stores["train"]
    episodes = [store.episode(i) for i in range(len(store))]
    episodes = [e for e in episodes if e.batch_size[0] >= training.sequence_length]
    held, train = episodes[::HELD_OUT], [e for i, e in enumerate(episodes) if i % HELD_OUT]
    if not held or not train:
        parser.error(f"{args.run_dir} holds {len(episodes)} episodes of at least {training.sequence_length} steps; "
                     f"expected {HELD_OUT} or more")
    weights = args.run_dir / "checkpoints" / "last.pt"
    if not weights.is_file():
        parser.error(f"{weights} does not exist; the action count comes from the run's checkpoint")
    num_actions = int(read_torch_file(weights, "the checkpoint")[ACTION_KEY].shape[0])
    torch.manual_seed(args.seed)
    models = make_models(run, num_actions, CPU)
    rng = random.Random(args.seed)

    def sample() -> TensorDict:
        return batch_of(segments(train, training.sequence_length, training.batch_num_samples, rng))

    # the run's own update (autocast, gradient accumulation and clipping, non-finite steps skipped)
    component = make_component(run, "tokenizer", models.tokenizer, TokenizerLoss(models.tokenizer,
                               run.models.tokenizer_loss), None, None, CPU, args.seed,
                               source=(sample, lambda batch: None), bf16=run.training.bf16)
    evaluation = segments(held, 2, EVAL_WINDOWS, random.Random(args.seed + 1))
    started, done = time.perf_counter(), 0
    while done < args.updates:
        steps = min(args.every, args.updates - done)
        component.schedule = dataclasses.replace(component.schedule, start_after_epochs=0, steps_first_epoch=None,
                                                 steps_per_epoch=steps)
        component.train_epoch(1, CPU, progress=False)  # epoch 1: no visit counts to move
        done += steps
        whole, changed = reconstruction_errors(models.tokenizer, evaluation)
        print(f"update {done}: held-out reconstruction error {whole:.4f} over whole frames, {changed:.4f} over "
              f"the pixels that changed ({time.perf_counter() - started:.0f} s)", flush=True)
    if args.png is not None:
        reconstruction_sheet(models.tokenizer, evaluation, args.png)
    if args.save is not None:
        state = {k: v for k, v in to_reference_state_dict(models).items() if k.startswith("tokenizer.")}
        torch.save(state, args.save)


if __name__ == "__main__":
    main(sys.argv[1:])
