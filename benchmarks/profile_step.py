"""Where one step's time goes: torch.profiler's table of operators (self CPU time) for one of the steps
``speed.py`` times, on the same work.

    python benchmarks/profile_step.py imagination --variant crafter --batch 16 --precision fp32
    python benchmarks/profile_step.py tokenizer --precision bf16 --memory-format contiguous --shapes

The step runs twice first (warm-up), then once under the profiler. ``--shapes`` groups the rows by
input shapes as well (which layer a slow operator belongs to).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

if __package__ in (None, ""):  # run as a file: import the sibling scripts as the benchmarks package
    sys.path[0] = str(Path(__file__).resolve().parents[1])
from benchmarks import speed, speed_configs, speed_imagination
from torchrl_deltairis.modules.models import MEMORY_FORMATS, configure_execution, resolve_execution
from torchrl_deltairis.reference import DeltaIrisModels


def step_function(step: str, variant: str, precision: str, memory_format: str, batch: int,
                  tiny: bool = False):
    """A function that runs the step once, built as speed.py builds it (CPU, the presets' chunks)."""
    device, bf16 = torch.device("cpu"), precision == "bf16"
    execution = resolve_execution(device, memory_format)
    configs = speed_configs.configs_for(variant, tiny)
    if step in ("tokenizer", "world_model"):
        runner = speed.TrainingStep(configs, variant, step, memory_format, device,
                                    conv_batch_chunk=execution.conv_batch_chunk, tiny=tiny)
        return lambda: runner.timed(bf16)
    torch.manual_seed(0)
    models = configure_execution(DeltaIrisModels(configs), execution)
    if step == "actor_critic":
        ac = speed_imagination.ActorCriticStep(models, variant, device)
        return lambda: ac.timed(bf16)
    run = speed_imagination.ImaginationRun(models, variant, batch, device)
    return lambda: run.timed("rollout", bf16)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=["tokenizer", "world_model", "actor_critic", "imagination"])
    parser.add_argument("--variant", default="crafter", choices=["crafter", "atari"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--memory-format", default="auto", choices=MEMORY_FORMATS)
    parser.add_argument("--batch", type=int, default=16, help="imagination's batch")
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--shapes", action="store_true", help="group by input shapes too")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiny", action="store_true",
                        help="speed.py's tiny models and segments: checks the script in seconds, "
                             "measures nothing real")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    run = step_function(args.step, args.variant, args.precision, args.memory_format, args.batch, args.tiny)
    run(), run()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes) as prof:
        run()
    print(prof.key_averages(group_by_input_shape=args.shapes).table(
        sort_by="self_cpu_time_total", row_limit=args.rows, max_shapes_column_width=70))


if __name__ == "__main__":
    main()
