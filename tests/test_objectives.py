"""TokenizerLoss and WorldModelLoss on tiny models: keys, masking, modes, gradients."""

import pytest
import torch
import torch.nn.functional as F
from tensordict import TensorDict

from torchrl_deltairis.objectives import TokenizerLoss, WorldModelLoss, WorldModelLossConfig
from test_modules import tiny_tokenizer, tiny_world_model


def segment(b=2, t=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[1, -1] = False  # right padding: the last transition of sample 1 goes into a padding frame
    pixels = torch.randint(0, 256, (b, t, 3, 16, 16), generator=g, dtype=torch.uint8)
    pixels[~mask] = 0
    return TensorDict(pixels=pixels, action=torch.randint(0, 3, (b, t), generator=g),
                      reward=torch.tensor([[0.0, 1.0, -2.0, 0.0], [0.5, 0.0, 0.0, 0.0]]),
                      terminated=torch.tensor([[False, False, False, True], [False] * 4]),
                      mask_padding=mask, batch_size=[b, t])


def loss_sum(out):
    return sum(v for k, v in out.items() if k.startswith("loss_"))


def test_tokenizer_loss_keys_pixels_and_modes():
    torch.manual_seed(0)
    tok = tiny_tokenizer()
    loss = TokenizerLoss(tok).eval()
    td = segment()
    out = loss(td)
    assert set(out.keys()) == set(loss.out_keys)
    as_float = td.clone().set("pixels", td["pixels"].float() / 255)
    torch.testing.assert_close(loss(as_float)["loss_reconstruction_l2"], out["loss_reconstruction_l2"])
    codebook = tok.quantizer.codebook.clone()
    loss(td)
    assert torch.equal(tok.quantizer.codebook, codebook)  # eval: no codebook update
    out = loss.train()(td)
    assert not torch.equal(tok.quantizer.codebook, codebook) and not out["codebook_entropy"].requires_grad
    loss_sum(out).backward()
    assert tok.encoder.encoder[0].weight.grad.abs().sum() > 0
    assert tok.decoder.decoder[0].weight.grad.abs().sum() > 0


def test_tokenizer_loss_ignores_transitions_into_padding():
    torch.manual_seed(0)
    loss = TokenizerLoss(tiny_tokenizer()).eval()
    td = segment()
    changed = td.clone()
    changed["pixels"][1, -1] = 255  # the padding frame itself
    a, b = loss(td), loss(changed)
    for key in ("loss_reconstruction_l1", "loss_reconstruction_l2", "loss_reconstruction_l2_worst_pixel"):
        torch.testing.assert_close(a[key], b[key])
    # the commitment covers every transition, as in the reference
    assert a["loss_commitment"] != b["loss_commitment"]


def test_tokenizer_loss_values_by_hand():
    torch.manual_seed(0)
    tok = tiny_tokenizer().eval()
    td = segment()
    out = TokenizerLoss(tok)(td)
    x = td["pixels"].float() / 255
    with torch.no_grad():
        rec = tok.decode(x[:, :-1], td["action"][:, :-1], tok(x[:, :-1], td["action"][:, :-1], x[:, 1:]).q)
    delta = (x[:, 1:] - rec)[(td["mask_padding"][:, :-1] & td["mask_padding"][:, 1:])]  # [n, 3, 16, 16]
    torch.testing.assert_close(out["loss_reconstruction_l1"], 0.1 * delta.abs().mean())
    worst = 0.01 * delta.pow(2).flatten(1).max(1).values.mean()
    torch.testing.assert_close(out["loss_reconstruction_l2_worst_pixel"], worst)


@pytest.mark.parametrize("reward_head", ["two_hot", "sign"])
def test_world_model_loss_values_and_masks(reward_head):
    torch.manual_seed(0)
    tok, wm = tiny_tokenizer().eval(), tiny_world_model(reward_head)
    td = segment()
    loss = WorldModelLoss(wm, tok)
    out = loss(td)
    assert set(out.keys()) == set(loss.out_keys)
    # the tokenizer is not trained here
    assert not any(p is q for p in loss.parameters() for q in tok.parameters())
    x = td["pixels"].float() / 255
    with torch.no_grad():
        tokens = tok(x[:, :-1], td["action"][:, :-1], x[:, 1:]).tokens
        logits = wm(wm.training_sequence(x, td["action"], tokens)).logits_latents.reshape(2, 4, 4, 8)[:, :-1]
    valid = td["mask_padding"][:, :-1] & td["mask_padding"][:, 1:]
    expected = F.cross_entropy(logits[valid].reshape(-1, 8), tokens[valid].reshape(-1))
    torch.testing.assert_close(out["loss_latents"], expected)
    reference_mask = WorldModelLoss(wm, tok, WorldModelLossConfig(mask_latents_with_next_padding=False))(td)
    first = td["mask_padding"][:, :-1]
    expected_ref = F.cross_entropy(logits[first].reshape(-1, 8), tokens[first].reshape(-1))
    torch.testing.assert_close(reference_mask["loss_latents"], expected_ref)
    assert 0 <= out["latent_accuracy"] <= 1 and not out["latent_accuracy"].requires_grad
    # precomputed tokens [B, T, K] (the last step's unused) are used as given
    with_tokens = loss(td.clone().set("tokens", torch.cat((tokens, tokens[:, :1]), 1)))
    torch.testing.assert_close(with_tokens["loss_latents"], out["loss_latents"])
    loss_sum(out).backward()
    assert wm.act_emb.weight.grad.abs().sum() > 0 and tok.encoder_act_emb.weight.grad is None


def test_world_model_loss_weights_and_keys():
    torch.manual_seed(0)
    tok, wm = tiny_tokenizer().eval(), tiny_world_model("sign")
    td = segment().rename_key_("terminated", "end")
    base = WorldModelLoss(wm, tok)
    base.set_keys(terminated="end")
    weighted = WorldModelLoss(wm, tok, WorldModelLossConfig(latents_weight=0.1, ends_weight=0.1))
    weighted.set_keys(terminated="end")
    a, b = base(td), weighted(td)
    torch.testing.assert_close(b["loss_latents"], 0.1 * a["loss_latents"])
    torch.testing.assert_close(b["loss_ends"], 0.1 * a["loss_ends"])
    torch.testing.assert_close(b["loss_rewards"], a["loss_rewards"])
    codebook = tok.quantizer.codebook.clone()
    tok.train()
    base(td)
    assert torch.equal(tok.quantizer.codebook, codebook)  # tokenizing for the WM never updates the codebook
