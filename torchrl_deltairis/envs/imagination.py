"""Imagination: the learned world model as a TorchRL environment.

Reference: delta-iris ``src/envs/world_model_env.py``. Two layers:

- :class:`ImaginationCore` (``imagination_core.py``) is the engine: it owns a preallocated :class:`KVCache` and does one imagined
  step for the whole batch with plain tensors (world-model step with 4 transformer calls → token
  decoding → frame re-embedding). No host synchronisation: tokens, reward class and end are picked on
  the device (argmax, or Gumbel-max sampling), frames come out as uint8.
- :class:`ImaginationEnv` is the TorchRL interface (a ``ModelBasedEnvBase``, batch-unlocked or with a
  fixed batch): ``reset`` burns a batch of real segments in and ``step`` returns ``("next", "pixels")``
  uint8, the predicted reward and end (``terminated`` = ``done``; ``truncated`` is always False).
- :func:`imagine` is what the actor-critic trains on: both LSTMs burned in over the context, H steps
  of the policy in the env, the EMA target's values over the imagined frames, the mask.

The start context (``"pixels"`` [B, L+1, C, H, W] uint8 or float, ``"action"`` [B, L], and optionally
the policy's start state under its state keys, e.g. the burned-in ``recurrent_state_h/c``) reaches the
env in one of three ways, all of which TorchRL's wrappers keep:

- ``env.reset(context=td)``: a reset keyword, passed through any ``TransformedEnv`` untouched;
- ``ImaginationEnv(..., context_fn=f)``: ``f()`` returns such a TensorDict at every reset that has no
  context (what a stock ``Collector`` does: its first reset, ``reset_at_each_iter``);
- on the bare env only, ``env.reset(TensorDict({"context": td, ...}))`` (a ``TransformedEnv`` keeps
  only reset and ``state_spec`` keys of its reset input, so use the keyword there).

An optional ``"mask_padding"`` ``[B, L+1]`` is otherwise ignored, as the reference ignores it: padding
frames are zeros and are fed as such. The start frame (the last one) must be real: a context whose
mask says otherwise is refused where that costs no device sync (a mask on the CPU, e.g. straight from
a sampler; the run's own sampler never ends a window on padding).

Predicted ends never stop imagination (the reference imagines H steps and masks what follows an end).
When TorchRL resets the rows that ended (``maybe_reset`` in ``rollout`` or a ``Collector``: a reset
carrying ``"_reset"``), those rows *go on* from the frame and the policy state they reached: one KV
cache serves the whole batch, so a single row cannot restart from a new context. TorchRL sees a new
trajectory there (``RewardSum``, ``StepCounter`` and the collector's ``traj_ids`` restart); the frames
and states are those of an unbroken rollout (on the bare env, :meth:`ImaginationEnv.maybe_reset` picks
them row by row on the device: no host sync per imagined step). A reset without ``"_reset"`` burns a
new context in for the whole batch. ``rollout`` defaults to ``break_when_any_done=False`` on this env
(a ``TransformedEnv`` keeps TorchRL's default, True: pass False there).

Policy-owned keys that must travel from step to step (the LSTM state) are declared as
``policy_state_spec``: they are observations of the env, and ``_step`` returns, for each, the very
tensor the policy wrote into ``("next", key)`` (never a stale copy), or the state the step started from
when the policy wrote none (a random policy, ``check_env_specs``). Sampling draws from the env's own generator: ``env.set_seed(s)``
makes two rollouts of the same policy actions identical, whatever else uses torch's global generator.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import expand_as_right
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase, ModelBasedEnvBase

from torchrl_deltairis import functional, keys
from torchrl_deltairis.envs.imagination_core import PIXEL_LEVELS, ImaginationCore, to_uint8_frames
from torchrl_deltairis.modules.actor_critic import ActorCriticWithTarget
from torchrl_deltairis.modules.tokenizer import Tokenizer
from torchrl_deltairis.modules.world_model import WorldModel
from torchrl_deltairis.policy import burn_in, value_from_logits


__all__ = ["ImaginationCore", "ImaginationEnv", "imagine", "to_uint8_frames"]


class ImaginationEnv(ModelBasedEnvBase):
    """TorchRL env over :class:`ImaginationCore` (see the module docstring for the start context,
    partial resets and seeding).

    Args:
        tokenizer, world_model: the trained models; the env's device is that of their parameters.
        sample, autocast_dtype, draw_fn, compile_step, compile_backend: see :class:`ImaginationCore`
            (``compile_step`` compiles the world model's step; TorchRL's own ``compile=`` keyword, which
            every env takes, compiles ``step_and_maybe_reset`` with its TensorDict plumbing instead).
        policy_state_spec: specs (unbatched) of policy-owned keys to carry between steps, e.g.
            :func:`torchrl_deltairis.policy.recurrent_state_spec`. ``reset`` takes them from the context
            (the burned-in state) or fills zeros.
        batch_size: leave empty (batch-unlocked: the context sets the batch). A fixed ``[B]`` serves
            runners that build their own buffers, such as a TorchRL ``Collector``.
        context_fn: called by a reset that is given no context; returns a context TensorDict ``[B]``
            (``"pixels"``, ``"action"``, optionally the policy's state keys), e.g. a sampler of real
            segments with the burned-in policy state.
    """

    def __init__(self, tokenizer: Tokenizer, world_model: WorldModel, *, sample: bool = True,
                 policy_state_spec: Composite | None = None, batch_size: torch.Size | tuple = (),
                 context_fn: Callable[[], TensorDictBase] | None = None,
                 autocast_dtype: torch.dtype | None = None,
                 draw_fn: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
                 compile_step: bool | str = False, compile_backend: str | Callable = "inductor") -> None:
        device = next(world_model.parameters()).device
        batch = torch.Size(batch_size)
        core = ImaginationCore(tokenizer, world_model, sample=sample, autocast_dtype=autocast_dtype,
                               draw_fn=draw_fn, compile_step=compile_step,
                               compile_backend=compile_backend)
        # a reset's flags are False by construction (a fresh context, or the rows' state with the flags of
        # the last full reset): TorchRL's check of them (`done.any()` per flag) would only sync the host
        super().__init__(core, device=device, batch_size=batch, allow_done_after_reset=True)
        self.context_fn = context_fn
        c = world_model.config
        pixels = Bounded(0, PIXEL_LEVELS, shape=(*batch, c.image_channels, c.image_size, c.image_size),
                         dtype=torch.uint8, device=device)
        states = {k: v.expand(*batch, *v.shape).to(device)  # on the models' device, wherever it was built
                  for k, v in (policy_state_spec or Composite()).items(True, True)}
        self.policy_state_keys = list(states)
        # "is_init", always False: no imagined step starts a policy from a fresh state (the first starts
        # from the burned-in one, and rows go on after an end). Declared so that TorchRL's collectors
        # (auto_register_policy_transforms, True from TorchRL 0.15) add no InitTracker, whose True at
        # t = 0 and after each imagined end would make a recurrent policy zero its state there
        init = Categorical(2, shape=(*batch, 1), dtype=torch.bool, device=device)
        self.observation_spec = Composite({keys.PIXELS: pixels, keys.IS_INIT: init, **states}, shape=batch,
                                          device=device)
        self.action_spec = Categorical(c.num_actions, shape=batch, dtype=torch.int64, device=device)
        self.reward_spec = Unbounded(shape=(*batch, 1), device=device)
        flag = Categorical(2, shape=(*batch, 1), dtype=torch.bool, device=device)
        flags = {keys.DONE: flag, keys.TERMINATED: flag.clone(), keys.TRUNCATED: flag.clone()}
        self.done_spec = Composite(flags, shape=batch, device=device)
        self._current: TensorDictBase | None = None  # the frame and policy state each row has reached

    @property
    def core(self) -> ImaginationCore:
        return self.world_model

    def _start_context(self, tensordict: TensorDictBase | None, context: TensorDictBase | None) -> TensorDictBase:
        if context is None and tensordict is not None:
            inner = tensordict.get(keys.CONTEXT, None)
            if inner is not None:  # the bare env's reset-TensorDict form: state keys at the root
                context = inner.clone(False).update(tensordict.select(*self.policy_state_keys, strict=False))
        if context is None and self.context_fn is not None:
            context = self.context_fn()
            if keys.CONTEXT in context.keys():
                context = context.get(keys.CONTEXT).clone(False).update(
                    context.select(*self.policy_state_keys, strict=False))
        if context is None or context.get(keys.PIXELS, None) is None or context.get(keys.ACTION, None) is None:
            raise ValueError("ImaginationEnv.reset needs a start context: env.reset(context=td) (or a context_fn) "
                             "with 'pixels' [B, L+1, C, H, W] and 'action' [B, L]")
        return context

    def _reset(self, tensordict: TensorDictBase | None = None, *, context: TensorDictBase | None = None,
               **kwargs) -> TensorDictBase:
        if (context is None and tensordict is not None and self._current is not None
                and any(k in tensordict.keys(True) for k in self.reset_keys)):
            # TorchRL resets rows that ended: they go on from where they are (see the module docstring)
            return self._current.clone()
        context = self._start_context(tensordict, context)
        frames, actions = context.get(keys.PIXELS), context.get(keys.ACTION)
        mask = context.get(keys.MASK_PADDING, None)
        if mask is not None and mask.device.type == "cpu" and not bool(mask[..., -1].all()):
            raise ValueError(f"the start context ends on a padding frame in {int((~mask[..., -1]).sum())} of "
                             f"{mask.shape[0]} rows ('mask_padding'[:, -1] False): imagination starts from the "
                             f"last frame; sample windows that end on a real one "
                             f"(SegmentSampler(..., can_sample_beyond_end=False))")
        self.core.reset(frames, actions)
        batch = context.batch_size[:1]
        false = torch.zeros(*batch, 1, dtype=torch.bool, device=frames.device)
        out = TensorDict({keys.PIXELS: to_uint8_frames(frames[:, -1]), keys.IS_INIT: false.clone(), keys.DONE: false,
                          keys.TERMINATED: false.clone(), keys.TRUNCATED: false.clone()},
                         batch_size=batch, device=frames.device)
        for key in self.policy_state_keys:
            value = context.get(key, None)
            out.set(key, value if value is not None else self._state_zeros(key, batch, frames.device))
        self._current = out.clone()
        return out

    def _state_zeros(self, key, batch: torch.Size, device: torch.device) -> torch.Tensor:
        spec = self.observation_spec[key]
        return torch.zeros(*batch, *spec.shape[len(self.batch_size):], dtype=spec.dtype, device=device)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        frame, reward, end = self.core(tensordict.get(keys.PIXELS), tensordict.get(keys.ACTION))
        end = end.unsqueeze(-1)
        current = self._current
        current.set(keys.PIXELS, frame)
        out = TensorDict({keys.PIXELS: frame, keys.REWARD: reward.unsqueeze(-1), keys.DONE: end,
                          keys.TERMINATED: end.clone(), keys.TRUNCATED: torch.zeros_like(end),
                          keys.IS_INIT: torch.zeros_like(end)},
                         batch_size=tensordict.batch_size, device=frame.device)
        for key in self.policy_state_keys:  # the state the policy carries into the next step: the one it
            # wrote into ("next", key) (that very tensor), or, from a policy that keeps none, the one it had
            value = tensordict.get(("next", key), None)
            if value is None:
                value = tensordict.get(key, None)
            if value is None:
                value = self._state_zeros(key, tensordict.batch_size, frame.device)
            current.set(key, value)
            out.set(key, value)
        return out

    def maybe_reset(self, tensordict: TensorDictBase) -> TensorDictBase:
        """TorchRL's ``maybe_reset`` (``step_and_maybe_reset``: rollouts, collectors) without its host syncs.

        TorchRL asks ``done.any()`` on the host at every step (twice) and, after an end, resets the rows
        that ended with more syncs; such a reset gives back the state the rows reached (``_reset``). Here
        every entry is picked on the device instead, ``where(ended, reset value, value)``, and 0 where the
        reset has no value (as TorchRL pads): the same entries, with or without an end. Inputs outside
        that case (no reset state yet, entries the reset would add, non-tensor data) go to TorchRL's.
        """
        current = self._current
        leaves = dict(tensordict.items(True, True)) if current is not None else {}
        if (current is None or not self._simple_done or tensordict.batch_size != current.batch_size
                or not isinstance(leaves.get(keys.DONE), torch.Tensor)
                or any(not isinstance(v, torch.Tensor) for v in leaves.values())
                or any(k not in leaves for k in current.keys(True, True))
                or any(k in leaves for k in self.reset_keys)):
            return super().maybe_reset(tensordict)
        ended = leaves[keys.DONE]  # TorchRL's "_reset" signal, reduced to the batch as its update does
        if ended.ndim > tensordict.ndim:
            ended = ended.flatten(tensordict.ndim).any(-1)
        for key, value in leaves.items():
            reset_value = current.get(key, None)
            if reset_value is value:  # the reset gives this very tensor back
                continue
            rows = expand_as_right(ended, value)
            tensordict.set(key, value.masked_fill(rows, 0) if reset_value is None
                           else torch.where(rows, reset_value, value))
        return tensordict

    def rollout(self, max_steps: int, policy=None, callback=None, *, break_when_any_done: bool = False,
                **kwargs) -> TensorDictBase:
        """TorchRL's ``rollout``, which on this env does not stop at the first predicted end by default."""
        return super().rollout(max_steps, policy, callback, break_when_any_done=break_when_any_done, **kwargs)

    def _set_seed(self, seed: int | None) -> None:
        """Seeds the env's own generator (token, reward-class and end sampling), on the env's device."""
        if seed is None:
            self.core.generator = None
            return
        self.core.generator = torch.Generator(device=self.device).manual_seed(int(seed))


@torch.no_grad()
def imagine(env: EnvBase, actor, actor_critic: ActorCriticWithTarget, context: TensorDictBase, horizon: int, *,
            with_target: bool = True) -> TensorDictBase:
    """Imagined trajectories ``[B, H]`` from ``context`` (``"pixels"`` [B, L+1, ...], ``"action"`` [B, L]).

    ``actor`` is a TensorDict policy over ``actor_critic.model`` reading ``recurrent_state_h/c``
    (e.g. :func:`torchrl_deltairis.policy.make_actor`); sampling follows the exploration type. Both
    LSTMs are burned in over the context frames but the last; the env starts from the policy's state.
    With ``with_target``, the EMA target critic runs over the H imagined frames plus the last next
    frame, giving ``"target_state_value"`` and its ``("next", ...)`` twin (the bootstrap) and the
    target's start state. ``("collector", "mask")`` marks the steps up to the first imagined end.
    """
    frames, actions = context.get(keys.PIXELS), context.get(keys.ACTION)
    h, c = burn_in(actor_critic.model, frames[:, :-1])
    start = TensorDict({keys.PIXELS: frames, keys.ACTION: actions, keys.RECURRENT_STATE_H: h,
                        keys.RECURRENT_STATE_C: c}, batch_size=actions.shape[:1])
    start = env.reset(context=start)
    rollout = env.rollout(horizon, actor, tensordict=start, auto_reset=False, break_when_any_done=False,
                          return_contiguous=True)
    if with_target:
        th, tc = burn_in(actor_critic.target_model, frames[:, :-1])
        seen = torch.cat((rollout.get(keys.PIXELS), rollout.get(keys.NEXT_PIXELS)[:, -1:]), dim=1)
        out = actor_critic.target_model.unroll(functional.pixels_to_float(seen), th, tc)
        values = value_from_logits(actor_critic.target_model, out.logits_values)  # [B, H+1, 1]
        rollout.set(keys.TARGET_STATE_VALUE, values[:, :-1])
        rollout.set(("next", keys.TARGET_STATE_VALUE), values[:, 1:])
        rollout.set(keys.TARGET_RECURRENT_STATE_H, th.unsqueeze(1).expand(-1, horizon, -1))
        rollout.set(keys.TARGET_RECURRENT_STATE_C, tc.unsqueeze(1).expand(-1, horizon, -1))
    rollout.set(keys.MASK, functional.mask_after_first_done(ends=rollout.get(keys.NEXT_TERMINATED)[..., 0]))
    return rollout
