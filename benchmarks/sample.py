"""Segment sampling speed from the on-disk episode store (the trainer's data path).

    python benchmarks/sample.py [--steps 4000] [--batch 32] [--length 21]

Fills a store in a temporary folder with random 64x64 frames (16 envs, episodes ending with
probability 1/200 per step), then times ``buffer.sample()`` + ``increment_counts`` for the tokenizer
mode (padding on both sides) and the actor-critic mode (last frame real), in the writing process and
after reopening the store. Median of 50 batches, 2 threads.
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from tensordict import TensorDict

if __package__ in (None, ""):  # run as a file: import the sibling scripts as the benchmarks package
    sys.path[0] = str(Path(__file__).resolve().parents[1])
from benchmarks.timing import stopwatch
from torchrl_deltairis.data import EpisodeCounts, EpisodeStore, SegmentSampler, make_segment_buffer


def fill(store: EpisodeStore, steps: int, num_envs: int = 16, per_batch: int = 25) -> None:
    gen = torch.Generator().manual_seed(0)
    shape = (num_envs, per_batch)
    for _ in range(max(steps // (num_envs * per_batch), 1)):
        ended = torch.rand(*shape, 1, generator=gen) < 1 / 200
        store.add_batch(TensorDict({
            "pixels": torch.randint(0, 256, (*shape, 3, 64, 64), dtype=torch.uint8, generator=gen),
            "action": torch.randint(0, 17, shape, generator=gen),
            ("next", "reward"): torch.zeros(*shape, 1),
            ("next", "terminated"): ended,
            ("next", "truncated"): torch.zeros_like(ended),
        }, list(shape)))


def time_sampling(store: EpisodeStore, label: str, batch: int, length: int) -> None:
    counts = EpisodeCounts()
    for component, beyond_end in (("tokenizer", True), ("actor_critic", False)):
        sampler = SegmentSampler(store, counts, component, length, can_sample_beyond_end=beyond_end, alpha=5, seed=0)
        buffer = make_segment_buffer(store, sampler, batch)
        buffer.sample()
        times = []
        for _ in range(50):
            with stopwatch() as elapsed:
                sampler.increment_counts(buffer.sample())
            times.append(elapsed())
        print(f"{label:<13} {component:<13} {store.num_steps:>7} steps {store.num_episodes:>5} episodes  "
              f"batch {batch}x{length}: median {statistics.median(times) * 1e3:6.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=21)
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        store = EpisodeStore(f"{tmp}/store", capacity=10_000_000)  # Crafter's full capacity (sparse)
        fill(store, args.steps)
        time_sampling(store, "same process", args.batch, args.length)
        with stopwatch() as elapsed:
            reopened = EpisodeStore(f"{tmp}/store")
        print(f"reopen: {elapsed() * 1e3:.1f} ms")
        time_sampling(reopened, "reopened", args.batch, args.length)


if __name__ == "__main__":
    main()
