"""Execution choices that change no result beyond float rounding (params.common.memory_format and
conv_batch_chunk): the nearest upsampling, convolutions over chunks of images, NHWC activations."""

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from conftest import small_models
from test_validation import ROOT
from torchrl_deltairis.factory import make_models
from torchrl_deltairis.modules.convnet import FrameDecoder, FrameEncoder, upsample_nearest_2x
from torchrl_deltairis.modules.models import Execution, configure_execution, resolve_execution


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_upsampling_is_interpolate_bit_for_bit_and_keeps_the_layout(memory_format, dtype):
    x = torch.randn(3, 5, 4, 6).to(dtype).contiguous(memory_format=memory_format)
    out = upsample_nearest_2x(x)
    assert torch.equal(out, F.interpolate(x, scale_factor=2.0, mode="nearest"))
    assert out.is_contiguous(memory_format=memory_format)
    leaf = x.detach().float().requires_grad_()
    grad = torch.randn(3, 5, 8, 12)
    upsample_nearest_2x(leaf).backward(grad)
    torch.testing.assert_close(leaf.grad, F.avg_pool2d(grad, 2) * 4)  # each input pixel feeds a 2x2 block


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


def test_auto_layout_is_nhwc_except_under_bf16_autocast_on_a_cpu():
    models = configure_execution(small_models(), Execution(memory_format="auto"))
    net, x = models.world_model.frame_cnn[0], torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        assert _first_conv_input_is_nhwc(net, x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not _first_conv_input_is_nhwc(net, x)
        configure_execution(models, Execution())  # contiguous
        assert not _first_conv_input_is_nhwc(net, x)


def test_auto_means_chunks_of_16_on_a_cpu_and_whole_batches_on_a_gpu():
    assert resolve_execution(torch.device("cpu")) == Execution("auto", 16, False)
    assert resolve_execution(torch.device("cuda")) == Execution("auto", None, False)  # a device type, no GPU needed
    assert resolve_execution("cpu", "contiguous", None, True) == Execution("contiguous", None, True)


def test_a_run_builds_its_models_with_the_configured_execution():
    overrides = ["params=smoke", "params.common.memory_format=channels_last", "params.common.conv_batch_chunk=4"]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    models = make_models(cfg, 17, torch.device("cpu"))
    assert {(n.batch_chunk, n.memory_format) for n in _conv_nets(models)} == {(4, "channels_last")}
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        default = make_models(compose("config", overrides=["params=smoke"]), 17, torch.device("cpu"))
    assert {(n.batch_chunk, n.memory_format) for n in _conv_nets(default)} == {(16, "auto")}
