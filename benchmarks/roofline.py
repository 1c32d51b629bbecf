"""How close to the hardware's limit: the FLOPs of one piece of work (``torch.utils.flop_counter``) and
this machine's measured matmul rate in a precision, for ``benchmarks/speed.py``'s GFLOP/s column."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

if __package__ in (None, ""):  # run as a file: import the sibling scripts as the benchmarks package
    sys.path[0] = str(Path(__file__).resolve().parents[1])
from benchmarks.timing import stopwatch


def count_flops(work: Callable[[], object]) -> float:
    """Floating-point operations of one call of ``work`` (matmuls, convolutions, attention; forward
    and backward), counted by ``FlopCounterMode`` on a run that is not timed; NaN where it cannot
    count (the actor-critic step: see below)."""
    try:
        with FlopCounterMode(display=False) as counter:
            work()
    except RuntimeError:  # its module tracker trips over TensorDict parameters (the actor-critic losses)
        return float("nan")
    return float(counter.get_total_flops())


def matmul_peak(device: torch.device, precision: str, size: int | None = None, repeats: int = 5) -> float:
    """GFLOP/s of a square matmul on ``device`` in ``precision`` (fp32, or bf16 operands), the best of
    ``repeats`` after one warm-up: the rate the row's work is set against."""
    size = size or (8192 if device.type == "cuda" else 1536)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for i in range(repeats + 1):
        with stopwatch(device) as elapsed:
            a @ b
        if i:
            best = min(best, elapsed())
    return 2 * size ** 3 / best / 1e9


def annotate(row: dict, flops: float, seconds: float, peak: float) -> dict:
    """Adds ``gflop`` (per step), ``gflop_per_s`` and ``share_of_peak`` to a result row."""
    rate = flops / seconds / 1e9
    return {**row, "gflop": flops / 1e9, "gflop_per_s": rate, "peak_gflop_per_s": peak, "share_of_peak": rate / peak}


def describe(row: dict) -> str:
    """" 4.77 GFLOP, 166 GFLOP/s = 97 % of 171" for a printed line or a table cell."""
    if "gflop_per_s" not in row or row["gflop"] != row["gflop"]:  # absent or not countable (NaN)
        return ""
    return (f"{row['gflop']:.2f} GFLOP, {row['gflop_per_s']:.0f} GFLOP/s = "
            f"{100 * row['share_of_peak']:.0f} % of {row['peak_gflop_per_s']:.0f}")


# ---------------------------------------------------------------- launches and host syncs, counted on any device
# At Δ-IRIS's batch sizes a GPU waits on kernel launches and on its host, not on FLOPs; both can be counted
# on a CPU. Launches: the ATen operations dispatched (views and other metadata-only operations included: an
# upper bound, the proxy). Host syncs: the operations whose result the host must wait for on a GPU.
aten = torch.ops.aten
SYNCING_OPS = {aten._local_scalar_dense.default,  # .item(), bool(t), float(t), int(t), `if t:`
               aten.nonzero.default, aten.is_nonzero.default, aten.masked_select.default,
               aten._unique2.default, aten.unique_consecutive.default, aten.equal.default}
# Reads of a tensor's data that dispatch nothing on a CPU tensor (a device→host copy on a GPU), counted
# one each; torch.tensor(data, device=...) of host data: a blocking host→device copy on a GPU (copy_
# without non_blocking waits for the stream), counted where it names a device.
_READS = {torch.Tensor.tolist, torch.Tensor.numpy, torch.Tensor.__array__}
_FROM_HOST_DATA = {torch.tensor, torch.as_tensor, torch.asarray}
# Argument checks that read the data on a CPU only (CUDA relies on a device-side assert): not counted.
_CPU_ONLY_CHECKS = {torch.nn.functional.one_hot}
_COPIES = {aten._to_copy.default, aten.copy_.default}


@dataclass
class Dispatched:
    """What one piece of work dispatched: ``ops`` ATen operations, ``syncs`` host syncs by operation."""

    ops: int = 0
    syncs: Counter = field(default_factory=Counter)

    @property
    def num_syncs(self) -> int:
        return sum(self.syncs.values())


class _Counting:
    """State shared by the two modes of :func:`count_dispatch`."""

    def __init__(self, host_tensors: Iterable[torch.Tensor], cpu_run: bool) -> None:
        self.host, self.cpu_run, self.quiet = {id(t) for t in host_tensors}, cpu_run, 0
        self.result = Dispatched()

    def on_device(self, t: object) -> bool:
        """Whether ``t`` is device memory: on a CPU run, every CPU tensor but the listed host ones."""
        return (isinstance(t, torch.Tensor) and id(t) not in self.host
                and (t.device.type != "cpu" or self.cpu_run))

    def sync(self, name: str) -> None:
        self.result.syncs[name] += 1


class _FunctionCounter(TorchFunctionMode):
    def __init__(self, state: _Counting) -> None:
        super().__init__()
        self.state = state

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        s = self.state
        counted = func in _CPU_ONLY_CHECKS
        if func in _READS and s.on_device(args[0]):
            s.sync(f"Tensor.{func.__name__}")
            counted = True
        elif func in _FROM_HOST_DATA and args and not isinstance(args[0], torch.Tensor):
            device = kwargs.get("device")
            if device is not None and (s.cpu_run or torch.device(device).type != "cpu"):
                s.sync(f"torch.{func.__name__}(host data, device)")
                counted = True
        s.quiet += counted  # what runs inside is counted above (or not at all), not as syncs again
        try:
            return func(*args, **kwargs)
        finally:
            s.quiet -= counted


class _DispatchCounter(TorchDispatchMode):
    def __init__(self, state: _Counting) -> None:
        super().__init__()
        self.state = state

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        s = self.state
        s.result.ops += 1
        if not s.quiet:
            if func in SYNCING_OPS and s.on_device(args[0]):
                s.sync(str(func.overloadpacket.__name__))
            elif func in _COPIES and not s.cpu_run:  # between host and device: seen on a GPU only
                if func is aten.copy_.default:  # copy_(dst, src, non_blocking=False)
                    src, dst = args[1], args[0].device
                    non_blocking = args[2] if len(args) > 2 else kwargs.get("non_blocking", False)
                else:  # _to_copy(src, *, dtype, device, non_blocking, ...)
                    src, dst = args[0], torch.device(kwargs.get("device") or args[0].device)
                    non_blocking = kwargs.get("non_blocking", False)
                if src.device.type != "cpu" and dst.type == "cpu":
                    s.sync("copy device->host")
                elif src.device.type == "cpu" and dst.type != "cpu" and not non_blocking:
                    s.sync("copy host->device (blocking)")
        return func(*args, **kwargs)


def count_dispatch(work: Callable[[], object], host_tensors: Iterable[torch.Tensor] = (),
                   device: torch.device | str = "cpu") -> Dispatched:
    """ATen operations and host syncs of one call of ``work`` on ``device`` (a pass that is not timed).

    On a GPU the syncs are exact: reads of device tensors (``.item()``, ``bool()``, ``.tolist()``,
    ``nonzero``, ``masked_select``, ``unique``), device→host copies and blocking host→device ones. On a
    CPU every tensor stands for device memory but ``host_tensors`` (those a GPU run keeps on the host,
    e.g. :func:`optimizer_host_tensors`); a copy between host and device cannot be seen there, so the CPU
    count is that of the reads above plus ``torch.tensor(data, device=...)``: the GPU's, short of
    ``.to(device)`` / ``.cpu()`` calls. The CPU-only range checks of ``one_hot`` are not counted."""
    state = _Counting(host_tensors, torch.device(device).type == "cpu")
    with _FunctionCounter(state), _DispatchCounter(state):
        work()
    return state.result


def _kernel(name: str) -> bool:
    """An ATen operator, or a kernel that TorchInductor generated (``cpp_fused_*`` on a CPU with
    ``torch._inductor.config.cpp.enable_kernel_profile``, ``triton_*`` on a GPU)."""
    return name.startswith("aten::") or "cpp_fused" in name or "triton_" in name


def profile_generated_kernels() -> None:
    """Makes the CPU kernels TorchInductor generates from now on visible to the profiler (each records
    its call), for :func:`count_profiled_ops`; GPU kernels are seen either way."""
    import torch._inductor.config as inductor_config

    inductor_config.cpp.enable_kernel_profile = True


def count_profiled_ops(work: Callable[[], object]) -> int:
    """The outermost ATen operations and generated kernels of one call of ``work``, as the profiler sees
    them: ``count_dispatch`` for code that ``torch.compile`` ran (a dispatch or function mode turns
    TorchDynamo off, so that counting compiled code with it would count eager code, or fail on a
    ``fullgraph`` one). A fused kernel counts as one op; eager code counts each of its ATen calls,
    views included, so compare compiled and eager counts made by this function alike. Inductor's CPU
    kernels are seen only if compiled with :func:`profile_generated_kernels` on."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        work()

    def outermost(event) -> bool:
        parent = event.cpu_parent
        while parent is not None:
            if _kernel(parent.name):
                return False
            parent = parent.cpu_parent
        return True

    return sum(1 for e in prof.events() if _kernel(e.name) and outermost(e))


def optimizer_host_tensors(*optimizers: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The step counters of the optimizers' states that live on the host on every device (not
    ``capturable`` or ``fused``): ``.item()`` of them waits for nothing (Adam reads them each step)."""
    out = []
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            if group.get("capturable") or group.get("fused"):
                continue
            for p in group["params"]:
                step = optimizer.state.get(p, {}).get("step")
                if isinstance(step, torch.Tensor):
                    out.append(step)
    return out


def annotate_dispatch(row: dict, counted: Dispatched, per: int = 1) -> dict:
    """Adds ``ops_per_step``, ``syncs_per_step`` (``counted`` over ``per`` steps) and ``syncs_by_op``."""
    return {**row, "ops_per_step": counted.ops / per, "syncs_per_step": counted.num_syncs / per,
            "syncs_by_op": dict(counted.syncs)}


def describe_dispatch(row: dict) -> str:
    """"1632 ops, 1 sync" per step, for a printed line."""
    if "ops_per_step" not in row:
        return ""
    syncs = row["syncs_per_step"]
    return f"{row['ops_per_step']:g} ops, {syncs:g} sync{'' if syncs == 1 else 's'}"
