"""Execution choices that change no result beyond float rounding (params.common.memory_format and
conv_batch_chunk): the nearest upsampling, convolutions over chunks of images, NHWC activations and
the GroupNorm backward that keeps them fast."""

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from conftest import small_models
from test_validation import ROOT
from torchrl_deltairis.build.models import make_models
from torchrl_deltairis.modules.convnet import (FrameDecoder, FrameEncoder, GroupNorm, _GroupNormChannelsLast,
                                               upsample_nearest_2x)
from torchrl_deltairis.modules.models import Execution, configure_execution, resolve_execution
from torchrl_deltairis.config import RunConfig


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_upsampling_is_interpolate_bit_for_bit_and_keeps_the_layout(memory_format, dtype):
    x = torch.randn(3, 5, 4, 6).to(dtype).contiguous(memory_format=memory_format)
    out = upsample_nearest_2x(x)
    assert torch.equal(out, F.interpolate(x, scale_factor=2.0, mode="nearest"))
    assert out.is_contiguous(memory_format=memory_format)
    leaf = x.detach().requires_grad_()
    grad = torch.randn(3, 5, 8, 12).to(dtype).contiguous(memory_format=memory_format)
    upsample_nearest_2x(leaf).backward(grad)
    expected = grad.float().unflatten(2, (4, 2)).unflatten(-1, (6, 2)).sum((3, 5))  # each pixel feeds a 2x2 block
    bf16_rounding = {} if dtype == torch.float32 else dict(rtol=8e-3, atol=1e-2)
    torch.testing.assert_close(leaf.grad.float(), expected, **bf16_rounding)
    assert leaf.grad.dtype == dtype and leaf.grad.is_contiguous(memory_format=memory_format)


def _group_norm_and_grads(norm, x, grad):
    x = x.detach().requires_grad_()
    norm.zero_grad()
    out = norm(x)
    out.backward(grad)
    return out.detach(), x.grad, norm.weight.grad.clone(), norm.bias.grad.clone(), out.grad_fn


def _norm(channels: int, dtype=torch.float32) -> GroupNorm:
    torch.manual_seed(0)
    norm = GroupNorm(4, channels).to(dtype)
    norm.weight.data.normal_(), norm.bias.data.normal_()
    return norm


def test_nhwc_group_norm_backward_is_the_derivative():
    norm = _norm(8, torch.float64)
    x = (torch.randn(2, 8, 5, 3, dtype=torch.float64) * 3 + 7).contiguous(memory_format=torch.channels_last)
    assert torch.autograd.gradcheck(lambda x, w, b: _GroupNormChannelsLast.apply(x, w, b, 4, 1e-5),
                                    (x.requires_grad_(), norm.weight, norm.bias))


@pytest.mark.parametrize("size", [16, 32])  # at most 256 pixels, bf16 takes a detour through NCHW
def test_nhwc_group_norm_matches_aten_on_nchw(size):
    """bf16 outputs and gradients of input, weight and bias against ATen's NCHW GroupNorm (fp64 as the
    truth): no further from the truth than ATen's own bf16 kernel, with a mean far from zero (the
    cancellation the backward centres away)."""
    dtype = torch.bfloat16
    norm = _norm(64)
    x = torch.randn(3, 64, size, size) * 2 + 5
    grad = torch.randn(3, 64, size, size)
    ours = _group_norm_and_grads(norm, x.to(dtype).contiguous(memory_format=torch.channels_last),
                                 grad.to(dtype).contiguous(memory_format=torch.channels_last))
    aten = _group_norm_and_grads(norm, x.to(dtype), grad.to(dtype))
    truth = _group_norm_and_grads(norm.double(), x.to(dtype).double(), grad.to(dtype).double())
    assert type(ours[-1]).__name__ == "_GroupNormChannelsLastBackward" and ours[0].dtype == dtype
    assert type(aten[-1]).__name__ == "NativeGroupNormBackward0"
    assert all(t.is_contiguous(memory_format=torch.channels_last) and t.dtype == dtype for t in ours[:2])
    for got, theirs, true in zip(ours[:4], aten[:4], truth[:4]):
        err, aten_err = ((t.double() - true).abs().max() / true.abs().max() for t in (got, theirs))
        # dx: bf16 rounding, 2-5e-3 for both; the weight and bias gradients: fp32 sums, but the backward
        # reuses ATen's NHWC forward statistics, which add up to ~2e-5 here (1/200 of a bf16 step)
        assert err <= 2.5 * aten_err + 1e-4, (err, aten_err)


def test_group_norm_takes_aten_without_gradients_on_nchw_and_in_fp32():
    norm = _norm(8)
    nhwc = torch.randn(2, 8, 4, 4).contiguous(memory_format=torch.channels_last)
    # fp32: ATen's NHWC backward is the faster one (benchmarks/group_norm.py)
    assert type(norm(nhwc.requires_grad_()).grad_fn).__name__ == "NativeGroupNormBackward0"
    assert type(norm(nhwc.bfloat16()).grad_fn).__name__ == "_GroupNormChannelsLastBackward"
    nhwc = nhwc.detach()
    with torch.no_grad():
        assert torch.equal(norm(nhwc), F.group_norm(nhwc, 4, norm.weight, norm.bias))
        for size in (16, 17):  # bf16: NCHW's kernel up to 256 pixels, then the NHWC one; NHWC out
            x = torch.randn(2, 8, size, size).bfloat16().contiguous(memory_format=torch.channels_last)
            out = norm(x)
            assert torch.equal(out, F.group_norm(x.contiguous() if size == 16 else x, 4, norm.weight, norm.bias))
            assert out.is_contiguous(memory_format=torch.channels_last)
    assert type(norm(nhwc.contiguous().requires_grad_()).grad_fn).__name__ == "NativeGroupNormBackward0"


def _conv_nets(models):
    return [m for m in models.modules() if isinstance(m, (FrameEncoder, FrameDecoder))]


@pytest.mark.parametrize("execution", [Execution(conv_batch_chunk=3), Execution(memory_format="channels_last"),
                                       Execution(memory_format="auto", conv_batch_chunk=2)])
def test_chunks_and_layouts_give_the_whole_batch_results_and_gradients(execution):
    torch.manual_seed(0)
    models = small_models()
    frames = torch.rand(2, 4, 3, 64, 64)
    latents = torch.randn(2, 4, models.tokenizer.decoder.config.latent_dim, 8, 8)
    nets = _conv_nets(models)
    assert len(nets) == 6  # tokenizer encoder, decoder, frame_cnn; world model, actor-critic, its EMA target

    def outputs_and_grads():
        outs, grads = [], []
        for net in (models.tokenizer.encoder, models.tokenizer.frame_cnn, models.world_model.frame_cnn[0]):
            x = torch.cat((frames, frames[:, :, :1], frames), dim=2) if net is models.tokenizer.encoder else frames
            out = net(x)
            out.square().mean().backward()
            outs.append(out.detach())
            grads.append(net.encoder[0].weight.grad.clone())
            net.zero_grad()
        outs.append(models.tokenizer.decoder(latents).detach())
        return outs, grads

    expected = outputs_and_grads()
    configure_execution(models, execution)
    assert {(n.batch_chunk, n.memory_format) for n in nets} == {(execution.conv_batch_chunk, execution.memory_format)}
    got = outputs_and_grads()
    for ours, theirs in zip(got[0] + got[1], expected[0] + expected[1]):
        assert ours.is_contiguous()
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)  # float rounding (parity tolerance)


def _first_conv_input_is_nhwc(net, x) -> bool:
    seen = []
    handle = net.encoder[0].register_forward_hook(lambda m, i, o: seen.append(i[0].is_contiguous(
        memory_format=torch.channels_last) and not i[0].is_contiguous()))
    net(x)
    handle.remove()
    return seen[0]


def test_auto_layout_is_nhwc_in_fp32_and_under_bf16_autocast():
    models = configure_execution(small_models(), Execution(memory_format="auto"))
    net, x = models.world_model.frame_cnn[0], torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        assert _first_conv_input_is_nhwc(net, x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert _first_conv_input_is_nhwc(net, x)
        configure_execution(models, Execution())  # contiguous
        assert not _first_conv_input_is_nhwc(net, x)


def test_auto_means_chunks_of_16_on_a_cpu_and_whole_batches_on_a_gpu():
    assert resolve_execution(torch.device("cpu")) == Execution("channels_last", 16, False)
    assert resolve_execution(torch.device("cuda")) == Execution("contiguous", None, False)  # a device type, no GPU needed
    assert resolve_execution("cpu", "contiguous", None, True) == Execution("contiguous", None, True)


def test_a_run_builds_its_models_with_the_configured_execution():
    overrides = ["params=smoke", "params.common.memory_format=channels_last", "params.common.conv_batch_chunk=4"]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    models = make_models(RunConfig.from_hydra(cfg), 17, torch.device("cpu"))
    assert {(n.batch_chunk, n.memory_format) for n in _conv_nets(models)} == {(4, "channels_last")}
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        default = make_models(RunConfig.from_hydra(compose("config", overrides=["params=smoke"])), 17, torch.device("cpu"))
    assert {(n.batch_chunk, n.memory_format) for n in _conv_nets(default)} == {(16, "channels_last")}
