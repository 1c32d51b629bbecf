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


class ResidualBlock(nn.Module):
    """``skip(x) + f(x)`` with ``f`` = GN → SiLU → conv3×3 → GN → SiLU → conv3×3 (pre-activation)."""

    def __init__(self, in_channels: int, out_channels: int, num_groups: int = 32) -> None:
        super().__init__()
        self.f = nn.Sequential(
            nn.GroupNorm(num_groups, in_channels),
            nn.SiLU(inplace=True),
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.GroupNorm(num_groups, out_channels),
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


def upsample_nearest_2x(x: torch.Tensor) -> torch.Tensor:
    """``F.interpolate(x, scale_factor=2, mode="nearest")`` for ``[N, C, H, W]``, bit for bit, as one
    broadcast copy that keeps the memory format (NCHW or channels_last). On the CPU, ``interpolate``'s
    nearest kernel on NCHW fp32 runs ~7× slower than this copy (benchmarks/speed.py, imagination)."""
    n, c, h, w = x.shape
    if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
        return x[:, :, :, None, :, None].expand(n, c, h, 2, w, 2).reshape(n, c, 2 * h, 2 * w)
    nhwc = x.permute(0, 2, 3, 1)[:, :, None, :, None, :].expand(n, h, 2, w, 2, c)
    return nhwc.reshape(n, 2 * h, 2 * w, c).permute(0, 3, 1, 2)


class Upsample(nn.Module):
    """Doubles the resolution (nearest neighbour), then a 3×3 convolution."""

    def __init__(self, num_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(num_channels, num_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(upsample_nearest_2x(x))


def _channels_last(memory_format: str, x: torch.Tensor) -> bool:
    """Whether to run a network's activations NHWC: ``auto`` does, except under bf16 autocast on a CPU
    (where oneDNN's NCHW bf16 kernels measured faster in training steps, benchmarks/speed.py)."""
    if memory_format != "auto":
        return memory_format == "channels_last"
    cpu = x.device.type == "cpu"
    return not (cpu and torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)


def _apply_on_images(net: nn.Module, x: torch.Tensor, in_channels: int, chunk: int | None = None,
                     memory_format: str = "contiguous") -> torch.Tensor:
    """Runs a 2-D network over ``[*lead, C, H, W]`` by folding the leading dims; with ``chunk``, over
    pieces of at most ``chunk`` images (exact: every layer treats each image on its own); with
    ``memory_format`` channels_last (or auto, see :func:`_channels_last`), NHWC activations inside
    (the weights keep their layout; the output is contiguous)."""
    assert x.ndim >= 4 and x.size(-3) == in_channels, (
        f"expected [..., {in_channels}, H, W], got {tuple(x.shape)}")
    flat, packed_shape = einops.pack([x], "* c h w")
    nhwc = _channels_last(memory_format, flat)
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
      oneDNN and cuDNN convolve faster), or auto (channels_last but for bf16 autocast on a CPU).
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
        layers += [nn.GroupNorm(g, width), nn.SiLU(inplace=True),
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
                  nn.GroupNorm(g, nc), nn.SiLU(inplace=True),
                  nn.Conv2d(nc, config.image_channels, 3, padding=1)]
        self.decoder = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _apply_on_images(self.decoder, x, self.config.latent_dim, self.batch_chunk, self.memory_format)
