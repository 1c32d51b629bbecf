"""The container of the three Δ-IRIS networks and of their typed configs.

:class:`DeltaIrisModels` holds the tokenizer, the world model and the actor-critic (with its EMA
target); its state-dict keys are those of the reference's ``Agent``. :class:`ModelConfigs` holds the
configs they are built from and those of the two model losses; ``reference.configs_from_reference``
makes one from the ``params`` of a run's YAML (or a reference config).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from torchrl_deltairis.modules.convnet import FrameDecoder, FrameEncoder
from torchrl_deltairis.modules.actor_critic import ActorCriticWithTarget
from torchrl_deltairis.modules.tokenizer import Tokenizer
from torchrl_deltairis.modules.world_model import WorldModel

__all__ = ["COMPILED_PARTS", "COMPILE_MODES", "MEMORY_FORMATS", "DeltaIrisModels", "Execution",
           "compile_models", "configure_execution", "resolve_execution", "valid_compile_mode"]

# The fixed-shape convolutional parts, where the FLOPs are (the tokenizer's decoder above all): compiled
# in place, so the state-dict keys do not change. The transformer, whose KV cache grows step by step
# in imagination, stays eager.
COMPILED_PARTS = ("tokenizer.encoder", "tokenizer.decoder", "tokenizer.frame_cnn", "world_model.frame_cnn",
                  "actor_critic.model.cnn", "actor_critic.target_model.cnn")
COMPILE_MODES = (False, True, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def valid_compile_mode(mode: object) -> bool:
    return isinstance(mode, bool) or (isinstance(mode, str) and mode in COMPILE_MODES)


class DeltaIrisModels(nn.Module):
    """The three Δ-IRIS networks; state-dict keys are those of the reference's ``Agent``."""

    def __init__(self, configs: Any) -> None:
        """``configs``: a ``reference.ModelConfigs`` (any object with ``tokenizer``, ``world_model`` and
        ``actor_critic`` configs), kept as ``self.configs``."""
        super().__init__()
        self.configs = configs
        self.tokenizer = Tokenizer(configs.tokenizer)
        self.world_model = WorldModel(configs.world_model)
        self.actor_critic = ActorCriticWithTarget(configs.actor_critic)


def compile_models(models: DeltaIrisModels, mode: bool | str = True, backend: str = "inductor") -> DeltaIrisModels:
    """``torch.compile`` of ``COMPILED_PARTS`` in place (``params.common.compile``): ``mode`` False does
    nothing; True is torch's default mode; a string is a ``torch.compile`` mode (``"reduce-overhead"``:
    CUDA graphs on a GPU). Each new input shape, grad mode and train/eval mode compiles once; the
    results equal eager's to float rounding (tests/test_compile.py)."""
    if not valid_compile_mode(mode):
        raise ValueError(f"params.common.compile={mode!r}; expected one of {list(COMPILE_MODES)}")
    if mode is False:
        return models
    # one part runs with and without gradients, in train and eval mode, at a few batch sizes, each its
    # own static graph: more graphs than dynamo's default limit of 8. Static shapes (dynamic=False): a run
    # has few shapes, CUDA graphs want static ones, and Inductor failed to lay out the actor-critic's
    # CNN once its batch became symbolic ("cannot determine truth value of Relational", torch 2.13)
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    for path in COMPILED_PARTS:
        models.get_submodule(path).compile(mode=None if mode in (True, "default") else mode, backend=backend,
                                           dynamic=False)
    return models


MEMORY_FORMATS = ("auto", "contiguous", "channels_last")
CPU_CONV_BATCH_CHUNK = 16  # images per convolution call on a CPU (see convnet._ImageNet)


@dataclass(frozen=True)
class Execution:
    """How the models run, chosen per device (``params.common.memory_format`` and ``conv_batch_chunk``,
    ``params.training.imagination_bf16``; :func:`resolve_execution`). The first two
    change what is computed by float rounding only; ``imagination_bf16`` (opt-in) decodes imagined frames
    in bf16, which moves about half of their pixels by one level (tests/test_imagination_precision.py)."""

    memory_format: str = "contiguous"
    """the convolutions' activations: contiguous (the reference's NCHW), channels_last (NHWC) or auto
    (channels_last, the fastest measured on CPUs in fp32 and bf16: see convnet._ImageNet)"""
    conv_batch_chunk: int | None = None
    """images per convolution call (None: the whole batch at once)"""
    imagination_bf16: bool = False
    """bf16 autocast for the imagination env's convolutions (the transformer, the policy and every loss stay fp32)"""


def resolve_execution(device: torch.device, memory_format: str = "auto", conv_batch_chunk: int | str | None = "auto",
                      imagination_bf16: bool = False) -> Execution:
    """The :class:`Execution` for ``device``: ``conv_batch_chunk`` auto becomes 16 images on a CPU and the
    whole batch on a GPU, the fastest measured (benchmarks/speed.py); ``memory_format`` auto runs NHWC
    activations on a CPU (oneDNN's fastest, measured) and NCHW elsewhere: on CUDA, PyTorch's GroupNorm
    kernels are written for NCHW (a channels_last input is made contiguous inside, both ways), and NHWC
    has not been measured there. Bad values raise naming the config key."""
    device = torch.device(device)
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(f"params.common.memory_format={memory_format!r}; expected one of {list(MEMORY_FORMATS)}")
    if conv_batch_chunk != "auto" and conv_batch_chunk is not None and (
            isinstance(conv_batch_chunk, bool) or not isinstance(conv_batch_chunk, int) or conv_batch_chunk < 1):
        raise ValueError(f"params.common.conv_batch_chunk={conv_batch_chunk!r}; expected auto, null or a positive int")
    if not isinstance(imagination_bf16, bool):
        raise ValueError(f"params.training.imagination_bf16={imagination_bf16!r}; expected true or false")
    if memory_format == "auto":
        memory_format = "channels_last" if device.type == "cpu" else "contiguous"
    return Execution(
        memory_format=memory_format,
        conv_batch_chunk=(CPU_CONV_BATCH_CHUNK if device.type == "cpu" else None) if conv_batch_chunk == "auto"
        else conv_batch_chunk,
        imagination_bf16=imagination_bf16)


def configure_execution(models: nn.Module, execution: Execution) -> nn.Module:
    """Sets ``execution``'s memory format and batch chunk on every frame encoder and decoder of
    ``models``, in place (weights, their layout and the state dict are untouched)."""
    for module in models.modules():
        if isinstance(module, (FrameEncoder, FrameDecoder)):
            module.batch_chunk, module.memory_format = execution.conv_batch_chunk, execution.memory_format
    return models
