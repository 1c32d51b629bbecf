"""Seconds per training step (tokenizer, world model, actor-critic) and imagination throughput, beside
the reference's (docs/speed.md).

    python benchmarks/speed.py --json speed.json         # everything, on the CPU and on the GPU if there is one
    python benchmarks/speed.py --device cuda --steps imagination --json new.json --compare old.json
    python benchmarks/speed.py --load new.json --compare old.json   # compare two saved runs, measure nothing
    python benchmarks/speed.py --tiny --warmup 0 --repeats 1        # tiny work: checks the script in seconds
    python benchmarks/speed.py --device cuda --compile --json compiled.json   # the compiled path's rows
    python benchmarks/speed.py --device cuda --compile reduce-overhead --steps imagination   # CUDA graphs

One invocation covers every component step (tokenizer, world model, actor-critic) and imagination
throughput, in fp32 and bf16 autocast, on every device of ``--device`` (default: the CPU, and the GPU
when there is one); ``--json`` writes all the rows (each names its device). ``--compare OLD.json``
prints, row by row, this run's figure over OLD's (``new/old``) and the speed-up (above 1: this run is
faster), matching rows by device type, variant, step, precision, memory format and batch: measure
with one version of the code, save the JSON, and run the other version with ``--compare``.

The reference's work definitions (docs/speed.md), so that the numbers compare side by side: the shipped full-size
Crafter / Atari configs (the manifests in tests/data hold them); synthetic uint8 frames and random
actions; one step = loss + backward + gradient clipping at 10 + AdamW step (``optim.apply_gradients``,
as the trainer: skipped where the gradients are not finite). Tokenizer: 2 segments × 21 frames. World
model: 2 × 21 (Crafter) / 2 × 26 (Atari), its tokens computed by the frozen tokenizer inside the step
(as the reference does). Median of 4 timed steps after 1 warm-up,
``torch.set_num_threads(2)``. The actor-critic step and imagination (steps/s at batch 1, 16, 64, with
the share of TorchRL/TensorDict overhead) are defined in ``benchmarks/speed_imagination.py``.
The reference figures were measured on the 2-thread CPU; compare them to
CPU numbers only.

The training steps run in each of ``--memory-formats`` (params.common.memory_format), which take turns
step by step: ``auto`` (the presets' choice: NHWC activations, in fp32 and bf16),
``contiguous`` (the reference's NCHW layout) and ``channels_last``; imagination and the actor-critic
step run in the first. ``--conv-batch-chunk`` (params.common.conv_batch_chunk, default auto: 16 images
per convolution call on a CPU) applies to all. ``--wm-precomputed-tokens`` times the world-model step
with its tokens given in the batch (rows ``world_model*``), i.e. without the tokenizer's encoder pass.

Launches and host syncs: a GPU at Δ-IRIS's batch sizes waits on kernel launches and on its host more
than on FLOPs, and both are counted on any device, in one more pass that is not timed
(``roofline.count_dispatch``): each row's ``ops_per_step``, the ATen operations dispatched per step
(a proxy for launches), and ``syncs_per_step``, the host syncs (``.item()``, ``bool()``, ``.tolist()``,
``nonzero``, ``masked_select``, ``unique``, copies to the host, ``torch.tensor(data, device=...)``),
with ``syncs_by_op``. On a CPU a copy between host and device cannot be seen: there the count is that
of the data reads (the optimizer's step counters, on the host on a GPU too, left out). Imagination rows:
per imagined step of the whole batch through ``env.rollout``, beside the reset before them
(``reset_ops``, ``reset_syncs``). The optimizers run their per-parameter loops on a CPU and ``foreach``
kernels on a GPU: the CPU's op count of an update is the higher.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

import torch
from tensordict import TensorDict

if __package__ in (None, ""):  # run as a file: import the sibling scripts as the benchmarks package
    sys.path[0] = str(Path(__file__).resolve().parents[1])
from benchmarks import roofline, speed_imagination
from benchmarks.speed_configs import TINY_PEAK_SIZE, TINY_SEQUENCE_LENGTH, configs_for
from benchmarks.speed_tables import compare, format_table, read_rows
from benchmarks.timing import stopwatch
from torchrl_deltairis.modules.models import (
    MEMORY_FORMATS,
    Execution,
    compile_models,
    configure_execution,
    resolve_execution,
)
from torchrl_deltairis.objectives import TokenizerLoss, WorldModelLoss
from torchrl_deltairis.optim import apply_gradients
from torchrl_deltairis.reference import DeltaIrisModels

# The reference's seconds per step on this machine's CPU (2 threads), fp32 / bf16 autocast.
REFERENCE_SECONDS = {
    ("crafter", "tokenizer"): (3.74, 1.11), ("crafter", "world_model"): (0.59, 0.33),
    ("atari", "tokenizer"): (3.59, 0.98), ("atari", "world_model"): (0.77, 0.33),
}
SEQUENCE_LENGTH = {("crafter", "tokenizer"): 21, ("crafter", "world_model"): 21,
                   ("atari", "tokenizer"): 21, ("atari", "world_model"): 26}
WEIGHT_DECAY = {("crafter", "tokenizer"): 0.01, ("crafter", "world_model"): 0.01,
                ("atari", "tokenizer"): 0.0, ("atari", "world_model"): 0.01}
BATCH, MAX_GRAD_NORM, LR = 2, 10.0, 1e-4
COMPILED = "+compiled"  # the suffix of a step's name measured with --compile


def synthetic_segments(num_actions: int, length: int, device: torch.device, seed: int = 0) -> TensorDict:
    g = torch.Generator().manual_seed(seed)
    td = TensorDict(
        pixels=torch.randint(0, 256, (BATCH, length, 3, 64, 64), generator=g, dtype=torch.uint8),
        action=torch.randint(0, num_actions, (BATCH, length), generator=g),
        reward=torch.randint(-1, 2, (BATCH, length), generator=g).float(),
        terminated=torch.zeros(BATCH, length, dtype=torch.bool),
        mask_padding=torch.ones(BATCH, length, dtype=torch.bool), batch_size=[BATCH, length])
    return td.to(device)


class TrainingStep:
    """One component's training step (loss + backward + clip + AdamW) on fixed synthetic data."""

    def __init__(self, configs, variant: str, step: str, memory_format: str, device: torch.device,
                 precomputed_tokens: bool = False, compile: bool | str = False, conv_batch_chunk: int | None = None,
                 tiny: bool = False) -> None:
        torch.manual_seed(0)
        models = configure_execution(DeltaIrisModels(configs).to(device),
                                     Execution(memory_format=memory_format, conv_batch_chunk=conv_batch_chunk))
        compile_models(models, compile)  # params.common.compile
        key = (variant, step)
        length = TINY_SEQUENCE_LENGTH if tiny else SEQUENCE_LENGTH[key]
        self.data = synthetic_segments(configs.tokenizer.num_actions, length, device)
        if step == "tokenizer":
            self.loss = TokenizerLoss(models.tokenizer, configs.tokenizer_loss).train()
            self.params = list(models.tokenizer.parameters())
        else:
            models.tokenizer.eval()
            if precomputed_tokens:  # tokens [B, T, K] given in the batch: the tokenizer leaves the step
                x = self.data["pixels"].float() / 255
                with torch.no_grad():
                    tokens = models.tokenizer(x[:, :-1], self.data["action"][:, :-1], x[:, 1:]).tokens
                self.data["tokens"] = torch.cat((tokens, tokens[:, -1:]), dim=1)
            self.loss = WorldModelLoss(models.world_model, models.tokenizer, configs.world_model_loss).train()
            self.params = list(models.world_model.parameters())
        self.optimizer = torch.optim.AdamW(self.params, lr=LR, weight_decay=WEIGHT_DECAY[key])
        self.device = device

    def timed(self, bf16: bool) -> float:
        with stopwatch(self.device) as elapsed:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
                out = self.loss(self.data)
                total = sum(v for k, v in out.items() if k.startswith("loss_"))
            total.backward()
            apply_gradients(self.optimizer, self.params, MAX_GRAD_NORM)  # the trainer's update: clip, finite check, step
        return elapsed()

    def dispatched(self, bf16: bool) -> roofline.Dispatched:
        """The ATen operations and host syncs of one step (a pass that is not timed)."""
        return roofline.count_dispatch(lambda: self.timed(bf16), roofline.optimizer_host_tensors(self.optimizer),
                                       self.device)


def run(variants: list[str], steps: list[str], precisions: list[str], formats: list[str],
        device: torch.device, warmup: int, repeats: int, precomputed_tokens: bool = False,
        tiny: bool = False, peaks: dict[str, float] | None = None, compile: bool | str = False,
        conv_batch_chunk: int | None = None) -> list[dict]:
    """Times every configuration; the memory formats of one (variant, step, precision) take turns step by
    step, so that a shared machine's load hits them alike. ``peaks``: the matmul GFLOP/s per precision
    (``roofline.matmul_peak``), for each row's GFLOP/s and share of it; ``conv_batch_chunk``:
    ``params.common.conv_batch_chunk``."""
    results = []
    for variant in variants:
        configs = configs_for(variant, tiny)
        for step, precision in itertools.product(steps, precisions):
            runners = {f: TrainingStep(configs, variant, step, f, device, precomputed_tokens, compile,
                                       conv_batch_chunk, tiny) for f in formats}
            times: dict[str, list[float]] = {f: [] for f in formats}
            for i in range(warmup + repeats):
                for f, runner in runners.items():
                    seconds = runner.timed(bf16=precision == "bf16")
                    if i >= warmup:
                        times[f].append(seconds)
            # the counting passes run eager code (a dispatch or function mode turns TorchDynamo off, and
            # once it has met one it may keep later calls eager too): compiled rows skip them
            flops = float("nan") if compile else roofline.count_flops(
                lambda: next(iter(runners.values())).timed(bf16=precision == "bf16"))
            dispatched = {} if compile else {f: runner.dispatched(bf16=precision == "bf16")
                                             for f, runner in runners.items()}
            del runners
            ref = REFERENCE_SECONDS[(variant, step)][0 if precision == "fp32" else 1]
            name = f"{step}*" if precomputed_tokens and step == "world_model" else step
            name += COMPILED if compile else ""
            for f in formats:
                median = statistics.median(times[f])
                row = dict(variant=variant, step=name, precision=precision, memory_format=f,
                           conv_batch_chunk=conv_batch_chunk, device=str(device), seconds_median=median, seconds_all=times[f],
                           reference_seconds_cpu=ref, speedup_vs_reference=ref / median)
                if peaks:
                    row = roofline.annotate(row, flops, median, peaks[precision])
                if f in dispatched:
                    row = roofline.annotate_dispatch(row, dispatched[f])
                results.append(row)
                print(f"  {variant:8s} {name:12s} {precision:5s} {f:14s} {median:7.3f} s "
                      f"(reference {ref:.2f} s) {roofline.describe_dispatch(row)}; {roofline.describe(row)}",
                      flush=True)
    return results


# --tiny: work small enough to check the script in seconds on any CPU, not to measure: the shipped
def measure(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Every requested step on one device (component steps, then actor-critic and imagination)."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    print(f"device: {device} ({name}); torch {torch.__version__}{', tiny models' if args.tiny else ''}",
          flush=True)
    size = TINY_PEAK_SIZE if args.tiny else None
    peaks = {p: roofline.matmul_peak(device, p, size) for p in args.precisions}
    print("matmul peak: " + ", ".join(f"{p} {v:.0f} GFLOP/s" for p, v in peaks.items()), flush=True)
    chunk = resolve_execution(device, conv_batch_chunk=args.conv_batch_chunk).conv_batch_chunk
    print(f"convolutions: {chunk or 'the whole batch'} images per call; imagination and actor-critic in "
          f"{args.memory_formats[0]}", flush=True)
    model_steps = [s for s in args.steps if s in ("tokenizer", "world_model")]
    results = run(args.variants, model_steps, args.precisions, args.memory_formats, device, args.warmup,
                  args.repeats, args.wm_precomputed_tokens, args.tiny, peaks, args.compile, chunk)
    batches = args.batches or ([1, 16, 64] + ([256, 1024] if device.type == "cuda" else []))
    execution = Execution(memory_format=args.memory_formats[0], conv_batch_chunk=chunk)
    ac_rows = speed_imagination.run(args.variants, args.steps, args.precisions, device, args.warmup,
                                    args.repeats, batches, lambda variant: configs_for(variant, args.tiny), peaks,
                                    args.compile, execution)
    if results:
        print(format_table(results))
    if ac_rows:
        print(speed_imagination.format_table(ac_rows))
    return [{**row, "device_name": name, "tiny": args.tiny} for row in results + ac_rows]


def _chunk(text: str) -> int | str | None:
    if text in ("auto", "none"):
        return None if text == "none" else text
    return int(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", nargs="+", default=["auto"],
                        help="devices to measure, one after another: cpu, cuda, cuda:1, ... (default auto: "
                             "the CPU, and the GPU when there is one)")
    parser.add_argument("--variants", nargs="+", default=["crafter", "atari"], choices=["crafter", "atari"])
    all_steps = ["tokenizer", "world_model", "actor_critic", "imagination"]
    parser.add_argument("--steps", nargs="+", default=all_steps, choices=all_steps)
    parser.add_argument("--batches", nargs="+", type=int, default=None,
                        help="imagination batch sizes (default 1 16 64, plus 256 1024 on a GPU)")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--memory-formats", nargs="+", default=["auto", "contiguous"],
                        choices=list(MEMORY_FORMATS),
                        help="the training steps run in each (taking turns); imagination and the actor-critic "
                             "step in the first (params.common.memory_format)")
    parser.add_argument("--conv-batch-chunk", type=_chunk, default="auto",
                        help="images per convolution call (params.common.conv_batch_chunk): an int, none, "
                             "or auto (16 on a CPU, the whole batch on a GPU)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (the reference was measured with 2)")
    parser.add_argument("--wm-precomputed-tokens", action="store_true",
                        help="world model: tokens precomputed outside the step (not the reference's "
                             "definition; rows marked world_model*)")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny models, segments and peak matmul: checks the script in seconds, "
                             "measures nothing real")
    parser.add_argument("--compile", nargs="?", const=True, default=False, metavar="MODE",
                        help="torch.compile as params.common.compile=true (or =MODE, e.g. reduce-overhead): the "
                             "models' convolutional parts and the imagination env's whole step; the rows' "
                             "steps are named <step>+compiled and at least 2 warm-up steps absorb the compilation")
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON to this path")
    parser.add_argument("--compare", type=Path, default=None, metavar="OLD.json",
                        help="print each row's ratio to the same row of this saved --json file")
    parser.add_argument("--load", type=Path, default=None, metavar="NEW.json",
                        help="take the results from this saved --json file instead of measuring")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.compile:
        args.warmup = max(args.warmup, 2)  # the first calls compile (a second shape or mode recompiles)
        roofline.profile_generated_kernels()  # the compiled rows' ops are counted by the profiler
    torch.set_num_threads(args.threads)
    if args.load is not None:
        results = read_rows(args.load)
    else:
        auto = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        devices = [torch.device(d) for d in (auto if args.device == ["auto"] else args.device)]
        results = [row for device in devices for row in measure(args, device)]
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        devices = sorted({(r["device"], r.get("device_name", "")) for r in results})
        args.json.write_text(json.dumps(dict(devices=[dict(device=d, name=n) for d, n in devices],
                                             torch=torch.__version__, threads=args.threads,
                                             results=results), indent=2))
    if args.compare is not None:
        print(f"this run against {args.compare}:")
        print(compare(results, read_rows(args.compare)))


if __name__ == "__main__":
    main()
