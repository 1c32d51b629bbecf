"""Where this process runs: ``python -m torchrl_deltairis.machine`` prints the CPU model, core count,
torch's version, build (CPU / CUDA), intra-op thread count and the CPU capability its kernels use.

CI prints it before the tests, and ``benchmarks/`` put the same line at the head of their output:
float rounding, and so greedy rollouts and learning curves, differ with the CPU's kernels (oneDNN picks
AVX2, AVX-512 or AMX by CPU) and the thread count.
"""

from __future__ import annotations

import os
import platform

import torch

__all__ = ["cpu_model", "describe"]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as file:
            names = [line.split(":", 1)[1].strip() for line in file if line.startswith("model name")]
    except OSError:  # not Linux
        names = []
    return names[0] if names else (platform.processor() or platform.machine())


def describe() -> str:
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU"
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (f"machine: {cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__} ({build} build), "
            f"{torch.get_num_threads()} intra-op threads, CPU capability {torch.backends.cpu.get_cpu_capability()}"
            f"{gpu}")


if __name__ == "__main__":
    print(describe())
