"""A simulated CUDA device on a CPU-only torch: the GPU path of a run, checked without a GPU.

``install()`` makes ``cuda`` a device that torch code can use as on a GPU machine, with CPU data:

- ``torch.zeros(..., device="cuda")``, ``t.to("cuda")``, ``t.cuda()``, ``module.to("cuda")`` give
  :class:`SimTensor` s. A SimTensor holds a CPU tensor and reads ``t.device == cuda:0``; every
  operation on it runs on its CPU data and gives SimTensors (autograd included).
- An operation that mixes a SimTensor with a CPU tensor raises as CUDA does ("Expected all tensors to
  be on the same device"), except where CUDA allows it: Python scalars and 0-d CPU tensors, copies
  between devices (``copy_``, ``.to``, ``.cpu()``), and CPU index tensors for a device tensor.
- ``torch.cuda``'s queries answer as for one device (``is_available``, ``device_count``, names,
  memory figures read 0); ``synchronize`` and streams do nothing; ``pin_memory`` is the identity and
  ``is_pinned`` true. ``torch.autocast("cuda")`` is off: this checks placement, not bf16 rounding.
- A SimTensor pickles as its CPU data: ``torch.save`` then ``torch.load(map_location="cpu")``, as
  for a real device.

Why a wrapper subclass on the ``meta`` device: a CPU-only build aborts the process when a tensor is
made with ``device="cuda"``, even a wrapper without data, and fails ``.to("cuda")`` before any
dispatch; so a :class:`torch.overrides.TorchFunctionMode` catches the calls that name the device, and
``__torch_dispatch__`` runs the operations. ``FakeTensorMode`` checks devices too but holds no data,
so a run would stop at its first ``.item()``.

In a process: ``install()``. For ``python train.py``: ``sim_env()`` gives the environment variables
that make ``tests/sim_site/sitecustomize.py`` install it at start-up (env workers included: their
tensors stay on the CPU). Host syncs are counted in ``SYNCS`` (``.item()``, ``.tolist()``,
``bool()``, ``nonzero``, copies to the CPU) while installed.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves, tree_map
from torch.utils._python_dispatch import TorchDispatchMode

DEVICE = torch.device("cuda", 0)
SITE = Path(__file__).parent / "sim_site"
SYNCS: Counter = Counter()  # host syncs by operation, while installed
OPS: Counter = Counter()  # operations dispatched on SimTensors, by name

# operations where CUDA accepts CPU tensors beside device ones
_COPIES = {torch.ops.aten.copy_.default, torch.ops.aten._to_copy.default, torch.ops.aten._copy_from.default,
           torch.ops.aten._copy_from_and_resize.default, torch.ops.aten._foreach_copy_.default}
_INDEXING = {torch.ops.aten.index.Tensor, torch.ops.aten.index_put_.default, torch.ops.aten.index_put.default,
             torch.ops.aten._index_put_impl_.default}
# operations whose result the host waits for on a GPU
_SYNCING = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default,
            torch.ops.aten.is_nonzero.default, torch.ops.aten.masked_select.default,
            torch.ops.aten.unique_consecutive.default, torch.ops.aten._unique2.default}


def _is_sim_device(device) -> bool:
    if device is None:
        return False
    if isinstance(device, int):
        return True  # a bare index means a CUDA device
    return torch.device(device).type == "cuda"


class SimTensor(torch.Tensor):
    """A tensor on the simulated ``cuda:0``: CPU data in ``.inner``."""

    inner: torch.Tensor
    __torch_function__ = torch._C._disabled_torch_function_impl

    @staticmethod
    def __new__(cls, inner: torch.Tensor):
        assert not isinstance(inner, SimTensor) and inner.device.type == "cpu", inner.device
        out = torch.Tensor._make_wrapper_subclass(
            cls, inner.shape, strides=inner.stride(), storage_offset=inner.storage_offset(), dtype=inner.dtype,
            layout=inner.layout, device="meta", requires_grad=inner.requires_grad)
        out.inner = inner
        return out

    @property
    def device(self) -> torch.device:
        return DEVICE

    @property
    def is_cuda(self) -> bool:
        return True

    @property
    def is_meta(self) -> bool:  # the wrapper's own device is meta; Module.load_state_dict skips meta params
        return False

    @property
    def is_cpu(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"SimTensor({self.inner!r}, device='cuda:0')"

    def __reduce_ex__(self, protocol):
        return self.inner.detach().__reduce_ex__(protocol)

    def __tensor_flatten__(self):
        return ["inner"], None

    @staticmethod
    def __tensor_unflatten__(inner_tensors, meta, outer_size, outer_stride):
        return SimTensor(inner_tensors["inner"])

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        OPS[func.__name__] += 1
        if func in _SYNCING:
            SYNCS[func.__name__.split(".")[0]] += 1
        if func is torch.ops.aten._to_copy.default:
            target = kwargs.get("device")
            src = args[0].inner if isinstance(args[0], SimTensor) else args[0]
            out = func(src, *args[1:], **{k: v for k, v in kwargs.items() if k not in ("device", "pin_memory")})
            if target is not None and not _is_sim_device(target):
                SYNCS["to_cpu"] += 1
                return out
            return SimTensor(out)
        mixed_ok = func in _COPIES
        first = args[0] if args else None

        def unwrap(x):
            if isinstance(x, SimTensor):
                return x.inner
            if isinstance(x, torch.Tensor) and x.device.type == "meta":
                raise RuntimeError(f"simulated device: a tensor without data on the meta device reached {func}")
            if isinstance(x, torch.Tensor) and x.dim() > 0 and not mixed_ok:
                raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two "
                                   f"devices, cuda:0 and {x.device}! (simulated device, in {func})")
            return x

        if func is torch.ops.aten.copy_.default and not isinstance(first, SimTensor):
            SYNCS["to_cpu"] += 1
        if func in _INDEXING and isinstance(first, SimTensor):  # CPU index tensors are fine: unwrap them loosely
            indices = tree_map(lambda x: x.inner if isinstance(x, SimTensor) else x, args[1])
            out = func(unwrap(first), indices, *tree_map(unwrap, args[2:]), **tree_map(unwrap, kwargs))
        else:
            out = func(*tree_map(unwrap, args), **tree_map(unwrap, kwargs))
        if func is torch.ops.aten.copy_.default and not isinstance(first, SimTensor):
            return first  # a CPU destination stays a CPU tensor
        if func in (torch.ops.aten.copy_.default,) or (func._schema.is_mutable and isinstance(first, SimTensor)
                                                         and out is first.inner):
            return first
        return tree_map(lambda x: SimTensor(x) if isinstance(x, torch.Tensor) and not isinstance(x, SimTensor)
                        and x.device.type == "cpu" else x, out)


class SimDeviceMode(TorchFunctionMode):
    """Catches the calls that name the CUDA device before torch's CPU build refuses them."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", "")
        if func is torch.Tensor.to:
            self_, rest = args[0], args[1:]
            device, dtype, non_blocking, memory_format = torch._C._nn._parse_to(*rest, **kwargs)
            if _is_sim_device(device):
                layout = dict(dtype=dtype or self_.dtype, memory_format=memory_format or torch.preserve_format)
                if isinstance(self_, SimTensor):  # already there: a dtype or layout change at most (autograd's)
                    return func(self_, **layout, copy=bool(kwargs.get("copy", False)))
                moved = self_.to(**layout, copy=True)  # another device: always a copy, as CUDA's
                return _ToSim.apply(moved) if moved.requires_grad else SimTensor(moved)
        if func is torch.Tensor.cuda:
            return self.__torch_function__(torch.Tensor.to, types, (args[0], DEVICE), {})
        if func is torch.Tensor.__setitem__ and isinstance(args[0], SimTensor) and isinstance(args[2], (int, float, bool)):
            # C++ would make the value a tensor from the target's options (meta, without data); CUDA takes a
            # 0-d CPU tensor as well
            return func(args[0], args[1], torch.tensor(args[2]))
        if func is torch.Tensor.pin_memory:
            return args[0]
        if func is torch.Tensor.is_pinned:
            return True
        if func is torch.Tensor.__bool__ and args and isinstance(args[0], SimTensor):
            SYNCS["bool"] += 1
        if func in (torch.Tensor.item, torch.Tensor.tolist) and args and isinstance(args[0], SimTensor):
            SYNCS[name] += 1
            with torch._C.DisableTorchFunctionSubclass():
                return func(args[0].inner)
        if "device" in kwargs and _is_sim_device(kwargs["device"]):
            kwargs["device"] = "cpu"
            kwargs.pop("pin_memory", None)
            out = func(*args, **kwargs)
            return tree_map(lambda x: SimTensor(x) if isinstance(x, torch.Tensor) and not isinstance(x, SimTensor)
                            else x, out)
        if func is torch.Tensor.backward or any(isinstance(x, SimTensor) for x in tree_leaves((args, kwargs))):
            with SimFactoryMode():  # C++ on behalf of this call makes tensors from a SimTensor's options
                return func(*args, **kwargs)
        return func(*args, **kwargs)


class SimFactoryMode(TorchDispatchMode):
    """Tensors that C++ makes from a SimTensor's options ask for the wrapper's own device, meta (the
    scalar of a masked fill in a composite attention, autograd's zero gradients, AccumulateGrad's copy of
    a gradient in its parameter's layout): under this mode they are made on the CPU and wrapped, so that
    they hold data. It is entered only around calls that take a SimTensor, and around ``backward()``: a
    dispatch mode returns every tensor through Python, which breaks ``Tensor.__new__(subclass, tensor)``
    (tensordict's ``MemoryMappedTensor``). A tensor on the meta device that reaches a SimTensor operation
    anyway raises; it is never read as zeros."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        device = kwargs.get("device")
        if device is not None and torch.device(device).type == "meta":
            out = func(*args, **{**kwargs, "device": torch.device("cpu")})
            return tree_map(lambda x: SimTensor(x) if isinstance(x, torch.Tensor) and not isinstance(x, SimTensor)
                            else x, out)
        return func(*args, **kwargs)


class _ToSim(torch.autograd.Function):
    """A CPU tensor with a gradient moved to the device: the gradient flows back to the CPU."""

    @staticmethod
    def forward(ctx, x):
        return SimTensor(x.detach())

    @staticmethod
    def backward(ctx, grad):
        return grad.inner if isinstance(grad, SimTensor) else grad


class SimGenerator(torch.Generator):
    """``torch.Generator(device="cuda")``: a CPU generator that reads ``device == cuda:0`` (a CPU build
    has no CUDA generator). Not checked: that a SimTensor operation is given one of these (the
    dispatcher hands ``__torch_dispatch__`` another Python object for the same generator)."""

    def __new__(cls, device=None):
        sim = device is not None and _is_sim_device(device)
        generator = super().__new__(cls, "cpu" if sim or device is None else device)
        generator.sim = sim
        return generator

    def __init__(self, device=None):
        pass

    @property
    def device(self) -> torch.device:
        return DEVICE if self.sim else super().device


class _Stream:
    """A CUDA stream or event that does nothing: the simulated device runs every operation at once."""

    def __init__(self, *args, **kwargs):
        self.device = DEVICE

    def __getattr__(self, name):  # synchronize, wait_stream, wait_event, record, query...
        return lambda *args, **kwargs: True if name == "query" else None

    def elapsed_time(self, other) -> float:
        return 0.0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _cuda_patches() -> dict:
    def const(value):  # a function object per name: torch._dynamo's trace rules refuse one under two names
        return lambda *args, **kwargs: value

    answers = {"is_available": True, "device_count": 1, "current_device": 0, "is_initialized": True,
               "get_device_name": "simulated CUDA device (CPU data)", "get_device_capability": (9, 0),
               "is_bf16_supported": True, "get_rng_state_all": [], "current_stream": _Stream(),
               "default_stream": _Stream(), "stream": contextlib.nullcontext()}
    answers.update({name: 0 for name in ("memory_allocated", "max_memory_allocated", "memory_reserved",
                                         "max_memory_reserved")})
    answers.update({name: None for name in ("synchronize", "set_device", "empty_cache", "reset_peak_memory_stats",
                                            "manual_seed", "manual_seed_all", "set_rng_state_all")})
    return {**{name: const(value) for name, value in answers.items()}, "Stream": _Stream, "Event": _Stream}


_installed: list = []


def install() -> None:
    """Makes ``cuda`` the simulated device in this process (idempotent)."""
    if _installed:
        return
    old = {name: getattr(torch.cuda, name, None) for name in _cuda_patches()}
    for name, value in _cuda_patches().items():
        setattr(torch.cuda, name, value)
    real_autocast_init = torch.autocast.__init__

    def autocast_init(self, device_type, *args, **kwargs):
        if device_type == "cuda":
            kwargs["enabled"] = False
            device_type = "cpu"
        real_autocast_init(self, device_type, *args, **kwargs)

    torch.autocast.__init__ = autocast_init
    real_generator, torch.Generator = torch.Generator, SimGenerator
    modes = (SimDeviceMode(),)
    for mode in modes:
        mode.__enter__()
    _installed.append((old, real_autocast_init, real_generator, modes))


def uninstall() -> None:
    if not _installed:
        return
    old, real_autocast_init, real_generator, modes = _installed.pop()
    torch.Generator = real_generator
    for mode in reversed(modes):
        mode.__exit__(None, None, None)
    torch.autocast.__init__ = real_autocast_init
    for name, value in old.items():
        if value is None:
            delattr(torch.cuda, name)
        else:
            setattr(torch.cuda, name, value)


@contextlib.contextmanager
def simulated_cuda():
    install()
    try:
        yield DEVICE
    finally:
        uninstall()


def sim_env() -> dict[str, str]:
    """Environment variables that make a Python process (``train.py``, a benchmark) run with the
    simulated device from its start (``tests/sim_site/sitecustomize.py``)."""
    path = os.pathsep.join([str(SITE), str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    return {"PYTHONPATH": path.rstrip(os.pathsep), "DELTAIRIS_SIMULATED_CUDA": "1"}
