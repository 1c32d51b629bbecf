"""Convolutional frame encoder / decoder shared by the tokenizer, the world model and the actor-critic.

Pre-activation residual blocks (GroupNorm → SiLU → conv3×3, twice) with 2×2 stride-2 downsampling and
nearest ×2 upsampling, as in Δ-IRIS (Micheli et al., ICML 2024, delta-iris ``src/models/convnet.py``).
Sub-module names follow the reference so that its checkpoints map key for key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import einops
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["FrameCnnConfig", "FrameEncoder", "FrameDecoder", "ResidualBlock", "Downsample", "Upsample",
           "upsample_nearest_2x"]


@dataclass
class FrameCnnConfig:
    """Configuration of a :class:`FrameEncoder` / :class:`FrameDecoder`."""

    image_channels: int = 3
    """channels of the image side (encoder input / decoder output)"""
    latent_dim: int = 64
    """channels of the latent side (encoder output / decoder input)"""
    num_channels: int = 64
    """base width; stage i has ``mult[i] * num_channels`` channels"""
    mult: list[int] = field(default_factory=lambda: [1, 1, 2, 2, 4])
    """width multiplier of each residual stage"""
    down: list[int] = field(default_factory=lambda: [1, 0, 1, 1, 0])
    """1 where a stage is followed by a 2× down- (encoder) or up-sampling (decoder)"""
    num_groups: int = 32
    """GroupNorm groups (hard-coded 32 in the reference); every width must be a multiple of it"""

    def __post_init__(self) -> None:
        if len(self.mult) != len(self.down):
            raise ValueError(f"mult {self.mult} and down {self.down} must have the same length")
        for width in [m * self.num_channels for m in self.mult]:
            if width % self.num_groups:
                raise ValueError(f"width {width} is not a multiple of num_groups={self.num_groups}")

    @property
    def num_downsamplings(self) -> int:
        return int(sum(self.down))


# At most this many pixels per image, a bf16 NHWC GroupNorm runs faster through NCHW: ATen's CPU
# channels_last forward is slow for few pixels and many channels ([16, 128, 16, 16]: 3.4 ms, against
# 1.2 ms with both layout copies; at 32x32 and above it is the faster one: benchmarks/group_norm.py)
_NCHW_DETOUR_MAX_PIXELS = 256


def _nhwc_group_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, num_groups: int,
                     eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ATen's GroupNorm forward ``(y, mean, rstd)`` of a bf16 / fp16 NHWC ``x`` (what :class:`GroupNorm`
    sends here), y NHWC."""
    n, c, h, w = x.shape
    if h * w <= _NCHW_DETOUR_MAX_PIXELS:
        y, mean, rstd = torch.native_group_norm(x.contiguous(), weight, bias, n, c, h * w, num_groups, eps)
        return y.contiguous(memory_format=torch.channels_last), mean, rstd
    return torch.native_group_norm(x, weight, bias, n, c, h * w, num_groups, eps)


class _GroupNormChannelsLast(torch.autograd.Function):
    """GroupNorm of an NHWC (channels_last) ``[N, C, H, W]`` tensor: ATen's forward, and a backward built
    from fp32 reductions over the pixels (contiguous along channels) and two fused multiply-adds.
    In bf16, ATen's own channels_last backward on a CPU runs 3-16x slower than its NCHW one
    ([16, 64, 64, 64], 2 threads: 55 ms against 3.5 ms; ours 15 ms: ``benchmarks/group_norm.py``),
    which made NHWC lose under bf16 autocast; with this one NHWC is the faster layout there too
    (``benchmarks/speed.py``, tokenizer and world-model steps)."""

    @staticmethod
    def forward(ctx, x, weight, bias, num_groups: int, eps: float):
        y, mean, rstd = _nhwc_group_norm(x, weight, bias, num_groups, eps)
        ctx.save_for_backward(x, weight, mean, rstd)
        ctx.num_groups = num_groups
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, mean, rstd = ctx.saved_tensors
        n, c, h, w = x.shape
        g = ctx.num_groups
        d, m = c // g, h * w * (c // g)
        # [N, HW, C] views (the memory is NHWC). Sums run in fp32 over fp32 products (exact for bf16
        # factors, and faster than rounding them to bf16); the elementwise work runs in x's dtype, on x
        # centred by its (rounded) mean so that a large mean does not cancel there
        x3 = x.permute(0, 2, 3, 1).reshape(n, h * w, c)
        dy3 = dy.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1).reshape(n, h * w, c)
        mean_c, rstd_c = mean.repeat_interleave(d, 1), rstd.repeat_interleave(d, 1)  # fp32 [N, C]
        zero = dy3.new_zeros(1, 1, 1, dtype=torch.float32)
        sum_dy = dy3.sum(1, dtype=torch.float32)
        sum_dy_xhat = (torch.addcmul(zero, dy3, x3).sum(1) - mean_c * sum_dy) * rstd_c  # sum(dy * x_hat) [N, C]
        grad_w = sum_dy_xhat.sum(0).to(weight.dtype) if ctx.needs_input_grad[1] else None
        grad_b = sum_dy.sum(0).to(weight.dtype) if ctx.needs_input_grad[2] else None
        if not ctx.needs_input_grad[0]:
            return None, grad_w, grad_b, None, None
        # dx = rstd (w dy - mean_g(w dy) - x_hat mean_g(w dy x_hat)) = a dy + b (x - shift) + k
        wf = weight.float()
        mean_wdy = (sum_dy * wf).view(n, g, d).sum(-1) / m  # [N, G]
        mean_wdy_xhat = (sum_dy_xhat * wf).view(n, g, d).sum(-1) / m
        a = (rstd_c * wf)[:, None].to(x.dtype)
        b = (-rstd * rstd * mean_wdy_xhat).repeat_interleave(d, 1)
        shift = mean_c.to(x.dtype)[:, None]
        k = (b * (shift[:, 0].float() - mean_c) - (rstd * mean_wdy).repeat_interleave(d, 1))[:, None].to(x.dtype)
        dx = torch.addcmul(k, x3 - shift, b[:, None].to(x.dtype)).addcmul_(dy3, a)
        return dx.view(n, h, w, c).permute(0, 3, 1, 2), grad_w, grad_b, None, None


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` (same parameters and state-dict keys) that stays fast on bf16 / fp16 NHWC
    (channels_last) activations on a CPU, forward and backward. Everything else takes ``F.group_norm``:
    in fp32, ATen's NHWC backward is the faster one (``python benchmarks/group_norm.py``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.affine and x.ndim == 4 and x.device.type == "cpu"
                and x.dtype in (torch.bfloat16, torch.float16) and _is_nhwc(x)):
            return super().forward(x)
        if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
            return _GroupNormChannelsLast.apply(x, self.weight, self.bias, self.num_groups, self.eps)
        return _nhwc_group_norm(x, self.weight, self.bias, self.num_groups, self.eps)[0]


def _is_nhwc(x: torch.Tensor) -> bool:
    """Channels_last strides that NCHW strides do not also satisfy (1×1 images, one channel)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


class ResidualBlock(nn.Module):
    """``skip(x) + f(x)`` with ``f`` = GN → SiLU → conv3×3 → GN → SiLU → conv3×3 (pre-activation)."""

    def __init__(self, in_channels: int, out_channels: int, num_groups: int = 32) -> None:
        super().__init__()
        self.f = nn.Sequential(
            GroupNorm(num_groups, in_channels),
            nn.SiLU(inplace=True),
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            GroupNorm(num_groups, out_channels),
            nn.SiLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
        )
        if in_channels == out_channels:
            self.skip_projection: nn.Module = nn.Identity()
        else:
            self.skip_projection = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip_projection(x) + self.f(x)


class Downsample(nn.Module):
    """Halves the resolution with a 2×2 convolution of stride 2."""

    def __init__(self, num_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(num_channels, num_channels, kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _repeat_2x(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
        return x[:, :, :, None, :, None].expand(n, c, h, 2, w, 2).reshape(n, c, 2 * h, 2 * w)
    nhwc = x.permute(0, 2, 3, 1)[:, :, None, :, None, :].expand(n, h, 2, w, 2, c)
    return nhwc.reshape(n, 2 * h, 2 * w, c).permute(0, 3, 1, 2)


class _UpsampleNearest2x(torch.autograd.Function):
    """The broadcast copy forward; backward, the sum of each 2×2 block as a pooling (ATen's CPU pooling
    kernel: 0.6 ms against ~17 ms for autograd's sum over the broadcast dimensions, [16, 64, 64, 64]
    NHWC)."""

    @staticmethod
    def forward(ctx, x):
        return _repeat_2x(x)

    @staticmethod
    def backward(ctx, grad):
        return F.avg_pool2d(grad, 2, divisor_override=1)


def upsample_nearest_2x(x: torch.Tensor) -> torch.Tensor:
    """``F.interpolate(x, scale_factor=2, mode="nearest")`` for ``[N, C, H, W]``, bit for bit, as one
    broadcast copy that keeps the memory format (NCHW or channels_last). On the CPU, ``interpolate``'s
    nearest kernel on NCHW fp32 runs ~7× slower than this copy (benchmarks/speed.py, imagination)."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _UpsampleNearest2x.apply(x)
    return _repeat_2x(x)


class Upsample(nn.Module):
    """Doubles the resolution (nearest neighbour), then a 3×3 convolution."""

    def __init__(self, num_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(num_channels, num_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(upsample_nearest_2x(x))


def _channels_last(memory_format: str) -> bool:
    """Whether to run a network's activations NHWC: ``auto`` does, in fp32 and under bf16 autocast alike
    (oneDNN convolves NHWC faster in both; :class:`GroupNorm` keeps the backward fast there)."""
    return memory_format in ("auto", "channels_last")


def _apply_on_images(net: nn.Module, x: torch.Tensor, in_channels: int, chunk: int | None = None,
                     memory_format: str = "contiguous") -> torch.Tensor:
    """Runs a 2-D network over ``[*lead, C, H, W]`` by folding the leading dims; with ``chunk``, over
    pieces of at most ``chunk`` images (exact: every layer treats each image on its own); with
    ``memory_format`` channels_last or auto, NHWC activations inside
    (the weights keep their layout; the output is contiguous)."""
    assert x.ndim >= 4 and x.size(-3) == in_channels, (
        f"expected [..., {in_channels}, H, W], got {tuple(x.shape)}")
    flat, packed_shape = einops.pack([x], "* c h w")
    nhwc = _channels_last(memory_format)
    if nhwc:
        flat = flat.contiguous(memory_format=torch.channels_last)
    if chunk is None or flat.size(0) <= chunk:
        out = net(flat)
    else:
        out = torch.cat([net(piece) for piece in flat.split(chunk)])
    (y,) = einops.unpack(out.contiguous() if nhwc else out, packed_shape, "* c h w")
    return y


class _ImageNet(nn.Module):
    """Base of the frame encoder and decoder, with two execution choices that change no result beyond
    float rounding (set by :func:`torchrl_deltairis.modules.models.configure_execution` from
    ``params.common``):

    - ``batch_chunk`` (None: the whole batch at once): how many images go through the network together.
      Activations of 64×64 images at 64 channels overflow a CPU's caches beyond ~16 images, so pieces
      of 16 run faster there.
    - ``memory_format``: contiguous (NCHW, the reference's), channels_last (NHWC activations, which
      oneDNN and cuDNN convolve faster), or auto (channels_last: the fastest measured, fp32 and bf16).
    """

    batch_chunk: int | None = None
    memory_format: str = "contiguous"


class FrameEncoder(_ImageNet):
    """Frames ``[*lead, C, H, W]`` → latents ``[*lead, latent_dim, H / 2^d, W / 2^d]``."""

    def __init__(self, config: FrameCnnConfig) -> None:
        super().__init__()
        self.config = config
        g = config.num_groups
        layers: list[nn.Module] = [nn.Conv2d(config.image_channels, config.num_channels, 3, padding=1)]
        width = config.num_channels
        for m, d in zip(config.mult, config.down):
            layers.append(ResidualBlock(width, m * config.num_channels, g))
            width = m * config.num_channels
            if d:
                layers.append(Downsample(width))
        layers += [GroupNorm(g, width), nn.SiLU(inplace=True),
                   nn.Conv2d(width, config.latent_dim, 3, padding=1)]
        self.encoder = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _apply_on_images(self.encoder, x, self.config.image_channels, self.batch_chunk, self.memory_format)


class FrameDecoder(_ImageNet):
    """Latents ``[*lead, latent_dim, h, w]`` → frames ``[*lead, C, h·2^d, w·2^d]`` (no output activation)."""

    def __init__(self, config: FrameCnnConfig) -> None:
        super().__init__()
        self.config = config
        g, nc = config.num_groups, config.num_channels
        # Built from the image side inwards, then reversed: the mirror image of FrameEncoder.
        stages: list[nn.Module] = []
        out_width = nc
        for m, d in zip(config.mult, config.down):
            stages.append(ResidualBlock(m * nc, out_width, g))
            out_width = m * nc
            if d:
                stages.append(Upsample(m * nc))
        stages.reverse()
        layers = [nn.Conv2d(config.latent_dim, config.mult[-1] * nc, 3, padding=1), *stages,
                  GroupNorm(g, nc), nn.SiLU(inplace=True),
                  nn.Conv2d(nc, config.image_channels, 3, padding=1)]
        self.decoder = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _apply_on_images(self.decoder, x, self.config.latent_dim, self.batch_chunk, self.memory_format)
