"""Behaviour of the Δ-IRIS modules on tiny configurations (CPU, a few ms each)."""

import pytest
import torch

from torchrl_deltairis.modules import (
    ActorCriticConfig, ActorCriticWithTarget, FrameCnnConfig, FrameDecoder, FrameEncoder, Quantizer,
    QuantizerConfig, Tokenizer, TokenizerConfig, Transformer, TransformerConfig, WorldModel, WorldModelConfig,
)


def cnn(image_channels, latent_dim):
    return FrameCnnConfig(image_channels, latent_dim, num_channels=8, mult=[1, 2], down=[1, 1], num_groups=4)


def tiny_tokenizer(num_actions=3):
    return Tokenizer(TokenizerConfig(num_actions=num_actions, image_size=16, codebook_size=8, codebook_dim=4,
                                     encoder_config=cnn(7, 4), decoder_config=cnn(3, 10),
                                     frame_cnn_config=cnn(3, 2)))


def tiny_world_model(reward_head="two_hot", num_actions=3):
    tc = TransformerConfig(max_blocks=4, num_layers=2, num_heads=2, embed_dim=32)
    return WorldModel(WorldModelConfig(num_actions=num_actions, latent_vocab_size=8, image_size=16,
                                       reward_head=reward_head, transformer_config=tc,
                                       frame_cnn_config=cnn(3, 2)))


def tiny_actor_critic(value_head="two_hot"):
    return ActorCriticWithTarget(ActorCriticConfig(num_actions=3, frame_encoder_config=cnn(3, 2),
                                                   image_size=16, lstm_input_dim=32, lstm_dim=16,
                                                   value_head=value_head))


def test_frame_cnn_shapes_and_folded_leading_dims():
    torch.manual_seed(0)
    enc, dec = FrameEncoder(cnn(3, 5)), FrameDecoder(cnn(3, 5))
    x = torch.rand(2, 3, 3, 16, 16)
    z = enc(x)
    assert z.shape == (2, 3, 5, 4, 4)
    torch.testing.assert_close(z[1, 2], enc(x[1, 2:3])[0])  # folding (B, T) changes nothing per frame
    assert dec(z).shape == x.shape


@pytest.mark.parametrize("make, match", [
    (lambda: FrameCnnConfig(3, 4, num_channels=24), "multiple of num_groups"),
    (lambda: TransformerConfig(attention="full"), "valid choices"),
    (lambda: WorldModelConfig(reward_head="mse"), "valid choices"),
    (lambda: WorldModelConfig(transformer_config=TransformerConfig(embed_dim=256)), "must equal embed_dim"),
    (lambda: ActorCriticConfig(lstm_input_dim=512), "lstm_input_dim"),
    (lambda: QuantizerConfig(codebook_size=1000), "power of two"),
])
def test_config_validation(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@torch.no_grad()
def test_kv_cache_incremental_decoding_equals_full_forward():
    torch.manual_seed(0)
    transformer = Transformer(TransformerConfig(max_blocks=4, num_layers=2, num_heads=2, embed_dim=32)).eval()
    x = torch.randn(3, 22, 32)
    full = transformer(x)
    cache = transformer.make_kv_cache(3)
    storage = (cache.keys.data_ptr(), tuple(cache.keys.shape))
    chunks = [7, 1, 3, 1, 1, 1, 2, 6]  # burn-in, then imagination-like steps
    outs, start = [], 0
    for n in chunks:
        outs.append(transformer(x[:, start:start + n], kv_cache=cache))
        start += n
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=1e-5)
    assert cache.size == 22 and int(cache.length) == 22
    # static: the same preallocated storage, [layers, B, max_tokens, E]
    assert (cache.keys.data_ptr(), tuple(cache.keys.shape)) == storage == (storage[0], (2, 3, 24, 32))
    with pytest.raises(ValueError, match="overflow"):
        transformer(torch.randn(3, 3, 32), kv_cache=cache)  # 22 + 3 > 24 tokens
    cache.reset()
    torch.testing.assert_close(transformer(x[:, :5], kv_cache=cache), full[:, :5], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_world_model_heads_with_cache_equal_full_sequence():
    torch.manual_seed(0)
    wm = tiny_world_model().eval()
    frames, actions = torch.rand(2, 3, 3, 16, 16), torch.randint(0, 3, (2, 3))
    tokens = torch.randint(0, 8, (2, 2, 4))
    seq = wm.training_sequence(frames, actions, tokens)
    assert seq.shape == (2, 18, 32)
    full = wm(seq)
    assert full.logits_latents.shape == (2, 12, 8) and full.logits_rewards.shape == (2, 3, 255)
    cache = wm.transformer.make_kv_cache(2)
    first, second = wm(seq[:, :8], kv_cache=cache), wm(seq[:, 8:], kv_cache=cache)
    both = torch.cat((first.logits_latents, second.logits_latents), 1)
    torch.testing.assert_close(both, full.logits_latents, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat((first.logits_ends, second.logits_ends), 1), full.logits_ends,
                               atol=1e-5, rtol=1e-5)
    burn = wm.burn_in_sequence(frames, actions[:, :2], tokens)  # 2 blocks + the last frame
    torch.testing.assert_close(burn, seq[:, :13])


def test_quantizer_eval_is_frozen_and_training_updates():
    torch.manual_seed(0)
    q = Quantizer(QuantizerConfig(codebook_size=8, codebook_dim=4, input_dim=6)).eval()
    z = torch.randn(2, 3, 4, 6, requires_grad=True)
    before = q.codebook.clone()
    out = q(z)
    assert torch.equal(q.codebook, before) and int(q.num_codebook_updates) == 0
    # straight-through: the output equals post_quant_proj(codebook[tokens]); gradients reach z
    torch.testing.assert_close(out.q, q.embed_tokens(out.tokens), atol=1e-6, rtol=1e-6)
    out.q.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    q.train()
    q(z.detach(), update_codebook=False)
    assert torch.equal(q.codebook, before)
    out = q(z.detach())
    assert int(q.num_codebook_updates) == 1 and not torch.equal(q.codebook, before)
    torch.testing.assert_close(q.codebook.norm(dim=-1), torch.ones(8))
    counts = torch.bincount(out.tokens.flatten(), minlength=8).float() / 24
    torch.testing.assert_close(q.codewords_freqs, 0.98 / 8 + 0.02 * counts)


def test_quantizer_revives_dead_codes():
    torch.manual_seed(0)
    q = Quantizer(QuantizerConfig(codebook_size=8, codebook_dim=4, input_dim=4,
                                  max_codebook_updates_with_revival=10))
    q.codewords_freqs.copy_(torch.tensor([1.0, 0, 0, 0, 0, 0, 0, 0]))  # entropy 0 < log2(8) - 2
    z = torch.randn(1, 1, 5, 4)
    out = q.train()(z)
    assert int(out.codewords_revived) == 5  # 7 expired codes, 5 batch vectors to give
    zn = torch.nn.functional.normalize(q.pre_quant_proj(z), dim=-1).reshape(5, 4)
    revived = (q.codewords_freqs == 1 / 8).nonzero().flatten()
    assert len(revived) == 5
    sims = q.codebook[revived] @ zn.T  # each revived code is one of the batch vectors
    torch.testing.assert_close(sims.max(dim=1).values, torch.ones(5))
    assert out.codebook_entropy > 0


@torch.no_grad()
def test_tokenizer_round_trip():
    torch.manual_seed(0)
    tok = tiny_tokenizer().eval()
    x1, x2, a = torch.rand(2, 3, 3, 16, 16), torch.rand(2, 3, 3, 16, 16), torch.randint(0, 3, (2, 3))
    out = tok(x1, a, x2)
    assert out.tokens.shape == (2, 3, 4) and out.q.shape == (2, 3, 4, 16)
    torch.testing.assert_close(tok.embed_tokens(out.tokens), out.q, atol=1e-6, rtol=1e-6)
    rec = tok.encode_decode(x1, a, x2)
    assert rec.min() >= 0 and rec.max() <= 1
    torch.testing.assert_close(rec * 255, (rec * 255).round())
    torch.testing.assert_close(rec, tok.decode(x1, a, out.q).clamp(0, 1), atol=0.5 / 255 + 1e-6, rtol=0)
    torch.testing.assert_close(tok.burn_in(torch.cat((x1, x2[:, -1:]), 1), a),
                               tok(x1, a, torch.cat((x1[:, 1:], x2[:, -1:]), 1)).tokens)


def test_actor_critic_unroll_equals_steps_and_target_copy():
    torch.manual_seed(0)
    ac = tiny_actor_critic()
    frames = torch.rand(2, 4, 3, 16, 16)
    out = ac.model.unroll(frames)
    assert torch.equal(out.logits_values, torch.zeros(2, 4, 255))  # zero-initialised critic
    hx = cx = None
    for t in range(4):
        step = ac(frames[:, t], hx, cx)
        hx, cx = step.hx, step.cx
        torch.testing.assert_close(step.logits_actions, out.logits_actions[:, t])
    torch.testing.assert_close(hx, out.hx)
    assert not any(p.requires_grad for p in ac.target_model.parameters())
    assert not hasattr(ac, "update_target")  # the EMA moves through TorchRL's SoftUpdate (the loss slot)
    assert tiny_actor_critic("scalar").model.unroll(frames).logits_values.shape == (2, 4, 1)
