"""The engine of imagination: one imagined step for the whole batch on plain tensors.

:class:`ImaginationCore` owns a preallocated :class:`KVCache` and does one imagined step for the whole
batch (world-model step with 4 transformer calls → token decoding → frame re-embedding). No host
synchronisation: tokens, reward class and end are picked on the device (argmax, or Gumbel-max
sampling), frames come out as uint8. :class:`~torchrl_deltairis.envs.imagination.ImaginationEnv` is its
TorchRL interface. Reference: delta-iris ``src/envs/world_model_env.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn as nn

from torchrl_deltairis import functional
from torchrl_deltairis.modules.kv_cache import KVCache
from torchrl_deltairis.modules.tokenizer import Tokenizer
from torchrl_deltairis.modules.world_model import WorldModel


__all__ = ["ImaginationCore", "to_uint8_frames"]

PIXEL_LEVELS = 255


def to_uint8_frames(frames: torch.Tensor) -> torch.Tensor:
    """Float frames → uint8, clamped to [0, 1] and rounded to 1/255 steps in fp32 (exact for the
    reference's ``should_clamp`` output); uint8 frames pass through."""
    if frames.dtype == torch.uint8:
        return frames
    return frames.float().clamp(0, 1).mul(PIXEL_LEVELS).round().to(torch.uint8)


def _pick(logits: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Argmax, or with ``noise`` (standard exponential draws of the logits' shape) a categorical sample by
    the Gumbel-max trick, ``argmax(logits - log(noise))``: no host sync, unlike ``multinomial``."""
    logits = logits.float()
    if noise is not None:
        logits = logits - noise.log()
    return logits.argmax(dim=-1)


class ImaginationCore(nn.Module):
    """One imagined step for a batch, with an explicit KV cache; the world model and tokenizer are frozen.

    Args:
        tokenizer, world_model: the trained models (run in eval mode, without gradients).
        sample: sample tokens, the reward class (sign head) and the end flag (training), or take the
            argmax (tests, parity). The two-hot reward is always the expectation, as in the reference.
        autocast_dtype: None (the caller's autocast state, fp32 by default) or a dtype such as
            ``torch.bfloat16``: each step's convolutions (decoding the next frame, embedding it for the
            world model) run under autocast to it (``params.training.imagination_bf16``); the context's
            burn-in and the transformer that picks tokens, rewards and ends keep the caller's precision,
            so that near-tied logits are not flipped by rounding. Frames stay uint8, rewards fp32.
        draw_fn: None, or ``f(kind, logits) -> index`` that makes every draw in place of the argmax /
            sample, in the reference's order: ``"reward"`` (sign head only), ``"end"``, then 4 ``"latent"``
            per step (logits ``[B, V]``, indices ``[B]``), then ``"frame"``: the decoded frame ``[B, C, H, W]``
            float, to round to uint8 levels (a pixel at a rounding boundary is a near-tie too). The
            parity check replays the reference's recorded draws through it (:mod:`torchrl_deltairis.parity`).
        compile_step: False (eager), or a ``torch.compile`` mode (True: the default one; ``"reduce-overhead"``:
            CUDA graphs on a GPU; ``params.common.compile``) for the step, :meth:`step_tensors`, compiled
            whole (``fullgraph``, static shapes). It reads and writes the cache's tensors in place at the
            position held in its device tensor, draws nothing (the sampling noise comes in as an input,
            drawn before it in the order eager draws it, so compiled and eager sample alike) and
            branches on no data: the first step after a reset (no tail yet) and the later ones are its
            only two graphs per batch size. Not with ``draw_fn`` (the parity replay runs eager).
        compile_backend: the ``torch.compile`` backend (a name, or a callable as torch.compile takes).
    """

    def __init__(self, tokenizer: Tokenizer, world_model: WorldModel, *, sample: bool = True,
                 autocast_dtype: torch.dtype | None = None,
                 draw_fn: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
                 compile_step: bool | str = False, compile_backend: str | Callable = "inductor") -> None:
        super().__init__()
        self.tokenizer, self.world_model, self.sample = tokenizer, world_model, sample
        self.autocast_dtype = autocast_dtype
        self.draw_fn = draw_fn
        self.cache: KVCache | None = None
        self.generator: torch.Generator | None = None  # None: torch's global generator
        self._tail: torch.Tensor | None = None  # [B, n, E] embeddings fed before the next action
        self.compiled_step = None
        if compile_step is not False and draw_fn is None:
            mode = None if compile_step in (True, "default") else compile_step
            self.compiled_step = torch.compile(self.step_tensors, mode=mode, backend=compile_backend,
                                               fullgraph=True, dynamic=False)

    @property
    def num_actions(self) -> int:
        return self.world_model.config.num_actions

    def _cache_for(self, frames: torch.Tensor) -> KVCache:
        b = frames.size(0)
        if self.cache is None or self.cache.batch_size != b or self.cache.device != frames.device:
            self.cache = self.world_model.transformer.make_kv_cache(b, device=frames.device)
            if self.compiled_step is not None:  # written in place by the step: fixed addresses in a CUDA graph
                for tensor in (self.cache.keys, self.cache.values, self.cache.length):
                    torch._dynamo.mark_static_address(tensor)
        self.cache.reset()
        return self.cache

    def _autocast(self, device: torch.device):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.autocast_dtype)

    @torch.no_grad()
    def reset(self, frames: torch.Tensor, actions: torch.Tensor) -> None:
        """Burns the context in: frames ``[B, L+1, C, H, W]`` (uint8 or float), actions ``[B, L]``."""
        if frames.ndim != 5 or actions.shape != (frames.size(0), frames.size(1) - 1):
            raise ValueError(f"expected context frames [B, L+1, C, H, W] and actions [B, L], got "
                             f"{tuple(frames.shape)} and {tuple(actions.shape)}")
        tc = self.world_model.config.transformer_config
        if frames.size(1) > tc.max_blocks:
            raise ValueError(f"a context of {frames.size(1)} frames does not fit the world model's context: "
                             f"max_blocks={tc.max_blocks} time steps (world_model.transformer_config.max_blocks), "
                             f"one of them for the first imagined step")
        self.tokenizer.eval(), self.world_model.eval()
        frames = functional.pixels_to_float(frames)
        cache = self._cache_for(frames)
        tokens = self.tokenizer.burn_in(frames, actions)
        self.world_model.transformer(self.world_model.burn_in_sequence(frames, actions, tokens), cache)
        self._tail = frames.new_zeros(frames.size(0), 0, self.world_model.config.transformer_config.embed_dim)

    def _noise(self, batch_size: int, device: torch.device) -> tuple[torch.Tensor, ...] | None:
        """The exponential draws of one sampled step, in the order the step uses them (the sign head's
        reward, the end, then the K latents): the numbers eager sampling always drew, drawn up front."""
        if not self.sample or self.draw_fn is not None:
            return None
        wm = self.world_model
        classes = ([wm.config.num_reward_classes] if wm.config.reward_head != "two_hot" else []) + \
            [wm.config.num_end_classes] + [wm.config.latent_vocab_size] * wm.config.num_latent_tokens
        return tuple(torch.empty(batch_size, n, device=device).exponential_(generator=self.generator)
                     for n in classes)

    def _draw(self, kind: str, logits: torch.Tensor, noise: list[torch.Tensor] | None) -> torch.Tensor:
        if self.draw_fn is not None:
            return self.draw_fn(kind, logits)
        return _pick(logits, noise.pop(0) if noise is not None else None)

    def transformer_last(self, cache: KVCache, sequence: torch.Tensor) -> torch.Tensor:
        """Runs the cached transformer over ``sequence`` and returns the output at its last token (every
        transformer call of a step goes through here: the play tool's sliding window overrides it)."""
        return self.world_model.transformer(sequence, cache)[:, -1]

    def step_tensors(self, frame: torch.Tensor, action: torch.Tensor, tail: torch.Tensor, keys: torch.Tensor,
                     values: torch.Tensor, length: torch.Tensor, noise: tuple[torch.Tensor, ...] | None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One imagined step on tensors only (what ``compile_step`` compiles): the cache's ``keys``, ``values``
        and ``length`` are written in place; returns the next frame, reward, end and the next tail."""
        wm, k = self.world_model, self.world_model.config.num_latent_tokens
        cache = KVCache.view(keys, values, length)
        noise = list(noise) if noise is not None else None
        act_emb = wm.act_emb(action.unsqueeze(1))
        out = self.transformer_last(cache, torch.cat((tail.to(act_emb.dtype), act_emb), dim=1).float())
        if wm.config.reward_head == "two_hot":
            logits = wm.head_rewards.head_module(out).float()
            with torch.autocast(logits.device.type, enabled=False):  # the expectation in fp32
                reward = functional.two_hot_expectation(logits)
        else:
            reward = self._draw("reward", wm.head_rewards.head_module(out), noise).float() - 1
        end = self._draw("end", wm.head_ends.head_module(out), noise).bool()
        tokens = [self._draw("latent", wm.head_latents.head_module(out), noise)]
        for _ in range(k - 1):
            out = self.transformer_last(cache, wm.latents_emb(tokens[-1]).unsqueeze(1).float())
            tokens.append(self._draw("latent", wm.head_latents.head_module(out), noise))
        q = self.tokenizer.embed_tokens(torch.stack(tokens, dim=-1).unsqueeze(1))  # [B, 1, K, D]
        prev = functional.pixels_to_float(frame).unsqueeze(1)
        with self._autocast(frame.device):  # the convolutions: nearly all of the FLOPs
            decoded = self.tokenizer.decode(prev, action.unsqueeze(1), q)[:, 0]
            next_frame = (to_uint8_frames(decoded) if self.draw_fn is None
                          else self.draw_fn("frame", decoded.float())).unsqueeze(1)  # [B, 1, C, H, W] uint8
            frame_emb = wm.embed_frames(functional.pixels_to_float(next_frame))[:, :, 0]  # [B, 1, E]
        tail = torch.cat((wm.latents_emb(tokens[-1]).unsqueeze(1).float(), frame_emb.float()), dim=1)
        return next_frame[:, 0], reward, end, tail

    def _context_full(self) -> None:
        """The next step would not fit the world model's context. Imagination refuses (the reference
        silently flushed its cache there, losing the episode's past); play's ``SlidingImaginationCore``
        slides its window instead."""
        tc = self.world_model.config.transformer_config
        steps = (self.cache.size + self._tail.size(1)) // tc.tokens_per_block
        raise ValueError(f"imagination past the world model's context: the context and the steps so far fill "
                         f"{steps} of max_blocks={tc.max_blocks} time steps "
                         f"(world_model.transformer_config.max_blocks); context frames + horizon - 1 must be at most "
                         f"{tc.max_blocks} (play's SlidingImaginationCore slides a window instead)")

    @torch.no_grad()
    def forward(self, frame: torch.Tensor,
                action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """frame ``[B, C, H, W]`` (uint8 or float), action ``[B]`` → next frame uint8 ``[B, C, H, W]``,
        reward ``[B]`` float32, end ``[B]`` bool."""
        if self.cache is None or self._tail is None:
            raise RuntimeError("ImaginationCore.forward called before reset(context)")
        cache, k = self.cache, self.world_model.config.num_latent_tokens
        if cache.size + self._tail.size(1) + k + 1 > cache.max_tokens:  # host-side ints: no sync
            self._context_full()
        written = self._tail.size(1) + k  # the tail, the action and K - 1 latents
        inputs = (frame, action, self._tail, cache.keys, cache.values, cache.length,
                  self._noise(frame.size(0), frame.device))
        if self.compiled_step is None:
            next_frame, reward, end, self._tail = self.step_tensors(*inputs)
        else:
            torch.compiler.cudagraph_mark_step_begin()  # one step per replay: the last one's outputs are done
            # a CUDA graph's outputs live in memory its next replay overwrites: the run keeps copies
            next_frame, reward, end, self._tail = (t.clone() for t in self.compiled_step(*inputs))
        cache.size += written
        return next_frame, reward, end
