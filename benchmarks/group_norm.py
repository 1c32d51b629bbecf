"""GroupNorm on a CPU, by layout: ATen's kernels on NCHW and on NHWC (channels_last) tensors against
``modules/convnet.GroupNorm`` on NHWC, forward and backward, at the frame CNNs' shapes.

    python benchmarks/group_norm.py                      # fp32 and bf16, 2 threads
    python benchmarks/group_norm.py --dtypes bf16 --repeats 50

Milliseconds per call, the median of ``--repeats`` after two warm-up calls; the three take turns call
by call. The backward is of the output's sum against a fixed random gradient, with the input, the
weight and the bias requiring gradients (as in training).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
import torch.nn as nn

if __package__ in (None, ""):  # run as a file: import the sibling scripts as the benchmarks package
    sys.path[0] = str(Path(__file__).resolve().parents[1])
from benchmarks.timing import stopwatch
from torchrl_deltairis.modules.convnet import GroupNorm

SHAPES = [(16, 64, 64, 64), (16, 64, 32, 32), (16, 128, 32, 32), (16, 128, 16, 16), (16, 256, 8, 8)]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _timer(norm: nn.Module, x: torch.Tensor, grad: torch.Tensor):
    x = x.detach().requires_grad_()

    def forward() -> float:
        with stopwatch() as elapsed:
            norm(x)
        return elapsed()

    def backward() -> float:
        out = norm(x)
        with stopwatch() as elapsed:
            out.backward(grad)
        return elapsed()
    return forward, backward


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print("| shape | dtype | ATen NCHW fwd / bwd (ms) | ATen NHWC fwd / bwd | ours NHWC fwd / bwd |\n|---|---|---|---|---|")
    for shape in SHAPES:
        for name in args.dtypes:
            torch.manual_seed(0)
            x = (torch.randn(shape) * 2 + 1).to(DTYPES[name])
            grad = torch.randn(shape).to(DTYPES[name])
            aten, ours = nn.GroupNorm(32, shape[1]), GroupNorm(32, shape[1])
            nhwc = torch.channels_last
            cases = {"nchw": _timer(aten, x, grad),
                     "aten_nhwc": _timer(aten, x.contiguous(memory_format=nhwc), grad.contiguous(memory_format=nhwc)),
                     "ours_nhwc": _timer(ours, x.contiguous(memory_format=nhwc), grad.contiguous(memory_format=nhwc))}
            times = {case: ([], []) for case in cases}
            for i in range(args.repeats + 2):
                for case, (forward, backward) in cases.items():
                    f, b = forward(), backward()
                    if i >= 2:
                        times[case][0].append(f), times[case][1].append(b)
            cells = [" / ".join(f"{1e3 * statistics.median(t):.2f}" for t in times[case]) for case in cases]
            print(f"| {list(shape)} | {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
