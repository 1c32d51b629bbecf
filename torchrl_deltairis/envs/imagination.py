"""Imagination: the learned world model as a TorchRL environment.

Reference: delta-iris ``src/envs/world_model_env.py`` (SPEC A.5.1). Two layers:

- :class:`ImaginationCore` is the engine: it owns a preallocated :class:`KVCache` and does one imagined
  step for the whole batch with plain tensors (world-model step with 4 transformer calls → token
  decoding → frame re-embedding). No host synchronisation: tokens, reward class and end are picked on
  the device (argmax, or Gumbel-max sampling), frames come out as uint8.
- :class:`ImaginationEnv` is the TorchRL interface (a batch-unlocked ``ModelBasedEnvBase``): ``reset``
  reads a batch of real segments from the reset TensorDict (``("context", "pixels")`` [B, L+1, 3, H, W],
  ``("context", "action")`` [B, L]) and ``step`` returns ``("next", "pixels")`` uint8, the predicted
  reward and end (``terminated`` = ``done``; ``truncated`` is always False). An optional
``("context", "mask_padding")`` is ignored, as the reference ignores it: padding frames are zeros and
are fed as such; the start frame (the last one) must be real.

``_step`` returns only the keys the world model owns, so that keys written by the policy (its
recurrent state in ``("next", ...)``) are not overwritten by stale copies (SPEC B.0.2). Imagination
never stops at a predicted end: ``any_done`` is False and ``maybe_reset`` does nothing; losses mask
the steps after the first end. Pass policy-owned keys that must travel from step to step (the LSTM
state) as ``policy_state_spec`` so that TorchRL's ``step_mdp`` carries them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import ModelBasedEnvBase

from torchrl_deltairis import functional, keys
from torchrl_deltairis.modules.kv_cache import KVCache
from torchrl_deltairis.modules.tokenizer import Tokenizer
from torchrl_deltairis.modules.world_model import WorldModel

__all__ = ["ImaginationCore", "ImaginationEnv", "to_uint8_frames"]

_LEVELS = 255


def to_uint8_frames(frames: torch.Tensor) -> torch.Tensor:
    """Float frames → uint8, clamped to [0, 1] and rounded to 1/255 steps in fp32 (exact for the
    reference's ``should_clamp`` output); uint8 frames pass through."""
    if frames.dtype == torch.uint8:
        return frames
    return frames.float().clamp(0, 1).mul(_LEVELS).round().to(torch.uint8)


def _pick(logits: torch.Tensor, sample: bool) -> torch.Tensor:
    """Argmax, or a categorical sample by the Gumbel-max trick (no host sync, unlike multinomial)."""
    logits = logits.float()
    if sample:
        logits = logits - torch.empty_like(logits).exponential_().log()
    return logits.argmax(dim=-1)


class ImaginationCore(nn.Module):
    """One imagined step for a batch, with an explicit KV cache; the world model and tokenizer are frozen.

    Args:
        tokenizer, world_model: the trained models (run in eval mode, without gradients).
        sample: sample tokens, the reward class (sign head) and the end flag (training), or take the
            argmax (tests, parity). The two-hot reward is always the expectation, as in the reference.
    """

    def __init__(self, tokenizer: Tokenizer, world_model: WorldModel, *, sample: bool = True) -> None:
        super().__init__()
        self.tokenizer, self.world_model, self.sample = tokenizer, world_model, sample
        self.cache: KVCache | None = None
        self._tail: torch.Tensor | None = None  # [B, n, E] embeddings fed before the next action

    @property
    def num_actions(self) -> int:
        return self.world_model.config.num_actions

    def _cache_for(self, frames: torch.Tensor) -> KVCache:
        b = frames.size(0)
        if self.cache is None or self.cache.batch_size != b or self.cache.device != frames.device:
            self.cache = self.world_model.transformer.make_kv_cache(b, device=frames.device)
        self.cache.reset()
        return self.cache

    @torch.no_grad()
    def reset(self, frames: torch.Tensor, actions: torch.Tensor) -> None:
        """Burns the context in: frames ``[B, L+1, C, H, W]`` (uint8 or float), actions ``[B, L]``."""
        if frames.ndim != 5 or actions.shape != (frames.size(0), frames.size(1) - 1):
            raise ValueError(f"expected context frames [B, L+1, C, H, W] and actions [B, L], got "
                             f"{tuple(frames.shape)} and {tuple(actions.shape)}")
        self.tokenizer.eval(), self.world_model.eval()
        frames = functional.pixels_to_float(frames)
        cache = self._cache_for(frames)
        tokens = self.tokenizer.burn_in(frames, actions)
        self.world_model.transformer(self.world_model.burn_in_sequence(frames, actions, tokens), cache)
        self._tail = frames.new_zeros(frames.size(0), 0, self.world_model.config.transformer_config.embed_dim)

    def _transformer_last(self, sequence: torch.Tensor) -> torch.Tensor:
        """Runs the cached transformer over ``sequence`` and returns the output at its last token."""
        return self.world_model.transformer(sequence, self.cache)[:, -1]

    @torch.no_grad()
    def forward(self, frame: torch.Tensor,
                action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """frame ``[B, C, H, W]`` (uint8 or float), action ``[B]`` → next frame uint8 ``[B, C, H, W]``,
        reward ``[B]`` float32, end ``[B]`` bool."""
        if self.cache is None or self._tail is None:
            raise RuntimeError("ImaginationCore.forward called before reset(context)")
        wm, k = self.world_model, self.world_model.config.num_latent_tokens
        tc = wm.config.transformer_config
        if self.cache.size + self._tail.size(1) + k + 1 > tc.max_tokens:  # host-side ints: no sync
            self.cache.reset()  # the reference flushes the whole context when it is full (play only)
            self._tail = self._tail[:, -1:]
        act_emb = wm.act_emb(action.unsqueeze(1))
        out = self._transformer_last(torch.cat((self._tail.to(act_emb.dtype), act_emb), dim=1).float())
        if wm.config.reward_head == "two_hot":
            logits = wm.head_rewards.head_module(out).float()
            with torch.autocast(logits.device.type, enabled=False):  # the expectation in fp32
                reward = functional.two_hot_expectation(logits)
        else:
            reward = _pick(wm.head_rewards.head_module(out), self.sample).float() - 1
        end = _pick(wm.head_ends.head_module(out), self.sample).bool()
        tokens = [_pick(wm.head_latents.head_module(out), self.sample)]
        for _ in range(k - 1):
            out = self._transformer_last(wm.latents_emb(tokens[-1]).unsqueeze(1).float())
            tokens.append(_pick(wm.head_latents.head_module(out), self.sample))
        q = self.tokenizer.embed_tokens(torch.stack(tokens, dim=-1).unsqueeze(1))  # [B, 1, K, D]
        prev = functional.pixels_to_float(frame).unsqueeze(1)
        next_frame = to_uint8_frames(self.tokenizer.decode(prev, action.unsqueeze(1), q))  # [B, 1, C, H, W]
        frame_emb = wm.embed_frames(functional.pixels_to_float(next_frame))[:, :, 0]  # [B, 1, E]
        self._tail = torch.cat((wm.latents_emb(tokens[-1]).unsqueeze(1).float(), frame_emb.float()), dim=1)
        return next_frame[:, 0], reward, end


class ImaginationEnv(ModelBasedEnvBase):
    """Batch-unlocked TorchRL env over :class:`ImaginationCore` (see the module docstring).

    Args:
        tokenizer, world_model: the trained models; the env's device is that of their parameters.
        sample: see :class:`ImaginationCore`.
        policy_state_spec: specs (unbatched) of policy-owned keys to carry between steps, e.g.
            :func:`torchrl_deltairis.policy.recurrent_state_spec`. ``reset`` copies them from its input
            (the burned-in state) or fills zeros.
        batch_size: leave empty (batch-unlocked: the reset TensorDict sets the batch). A fixed
            ``[B]`` serves runners that reset without input, such as a TorchRL ``Collector``.
        context_fn: called by ``reset`` when its input holds no ``"context"``; returns a TensorDict
            with ``"context"`` (and optionally the policy's burned-in state), e.g. a sampler of real
            segments.
    """

    def __init__(self, tokenizer: Tokenizer, world_model: WorldModel, *, sample: bool = True,
                 policy_state_spec: Composite | None = None, batch_size: torch.Size | tuple = (),
                 context_fn: Callable[[], TensorDictBase] | None = None) -> None:
        device = next(world_model.parameters()).device
        batch = torch.Size(batch_size)
        core = ImaginationCore(tokenizer, world_model, sample=sample)
        super().__init__(core, device=device, batch_size=batch)
        self.context_fn = context_fn
        c = world_model.config
        pixels = Bounded(0, _LEVELS, shape=(*batch, c.image_channels, c.image_size, c.image_size),
                         dtype=torch.uint8, device=device)
        states = {k: v.expand(*batch, *v.shape)
                  for k, v in (policy_state_spec or Composite()).items(True, True)}
        self.policy_state_keys = list(states)
        self.observation_spec = Composite({keys.PIXELS: pixels, **states}, shape=batch, device=device)
        self.action_spec = Categorical(c.num_actions, shape=batch, dtype=torch.int64, device=device)
        self.reward_spec = Unbounded(shape=(*batch, 1), device=device)
        flag = Categorical(2, shape=(*batch, 1), dtype=torch.bool, device=device)
        flags = {keys.DONE: flag, keys.TERMINATED: flag.clone(), keys.TRUNCATED: flag.clone()}
        self.done_spec = Composite(flags, shape=batch, device=device)

    @property
    def core(self) -> ImaginationCore:
        return self.world_model

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        context = None if tensordict is None else tensordict.get(keys.CONTEXT, None)
        if context is None and self.context_fn is not None:
            tensordict = self.context_fn()
            context = tensordict.get(keys.CONTEXT, None)
        if context is None:
            raise ValueError("ImaginationEnv.reset needs a TensorDict with ('context', 'pixels') "
                             "[B, L+1, C, H, W] and ('context', 'action') [B, L]")
        frames, actions = context.get(keys.PIXELS), context.get(keys.ACTION)
        self.core.reset(frames, actions)
        batch = tensordict.batch_size
        false = torch.zeros(*batch, 1, dtype=torch.bool, device=frames.device)
        out = TensorDict({keys.PIXELS: to_uint8_frames(frames[:, -1]), keys.DONE: false,
                          keys.TERMINATED: false.clone(), keys.TRUNCATED: false.clone()},
                         batch_size=batch, device=frames.device)
        for key in self.policy_state_keys:
            value = tensordict.get(key, None)
            out.set(key, value if value is not None else self._state_zeros(key, batch, frames.device))
        return out

    def _state_zeros(self, key, batch: torch.Size, device: torch.device) -> torch.Tensor:
        spec = self.observation_spec[key]
        return torch.zeros(*batch, *spec.shape[len(self.batch_size):], dtype=spec.dtype, device=device)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        frame, reward, end = self.core(tensordict.get(keys.PIXELS), tensordict.get(keys.ACTION))
        end = end.unsqueeze(-1)
        return TensorDict({keys.PIXELS: frame, keys.REWARD: reward.unsqueeze(-1), keys.DONE: end,
                           keys.TERMINATED: end.clone(), keys.TRUNCATED: torch.zeros_like(end)},
                          batch_size=tensordict.batch_size, device=frame.device)

    def any_done(self, tensordict: TensorDictBase) -> bool:
        return False

    def maybe_reset(self, tensordict: TensorDictBase) -> TensorDictBase:
        return tensordict

    def _set_seed(self, seed: int | None) -> None:
        """Imagination draws from torch's global generator; seed it with ``torch.manual_seed``."""
