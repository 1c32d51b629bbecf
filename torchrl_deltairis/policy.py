"""The CNN-LSTM actor-critic as TorchRL modules, its recurrent state carried in the TensorDict.

- :class:`ActorCriticTrunk` runs one :class:`~torchrl_deltairis.modules.CnnLstmActorCritic` on a
  TensorDict. Sequential mode (collectors, imagination): one LSTM step per call from
  ``recurrent_state_h/c`` (zeros where the state is absent), writing ``"logits"``, ``"value_logits"``,
  ``"state_value"`` and the new state under ``("next", ...)``, so that TorchRL's ``step_mdp`` carries
  it to the next step. In a real env the state keys must be in the env's specs: append
  :meth:`ActorCriticTrunk.make_tensordict_primer` (a ``TensorDictPrimer``, as for TorchRL's
  ``LSTMModule``); it also zeroes the state of every env that resets. Recurrent mode
  (``torchrl.modules.set_recurrent_mode(True)``, set by every TorchRL loss, on ``[B, T]`` data): it
  unrolls the LSTM over T from the first step's state (zeroed where ``is_init``, and again wherever
  ``is_init`` marks a new episode inside the sequence), like ``LSTMModule``, with the CNN batched
  over B·T.
- :func:`make_actor` wraps the trunk into a ``ProbabilisticTensorDictSequential`` with a
  ``Categorical`` over int64 actions (``"action"``, ``"action_log_prob"``); ``ExplorationType.MODE``
  takes the argmax. :func:`make_value_operator` is the critic of the same network, writing
  ``"state_value"`` only (a :class:`ValueOperator`).
- :func:`burn_in` runs a network's LSTM over context frames (the policy and its EMA target each run
  their own) and returns the state to start from. :class:`CollectBurnIn` does the same at the start
  of each real-environment collect, over the last frames of each env's running episode, and returns
  the state as a TensorDict that the collector writes into its current step (no state stays on a
  module between calls).

Why sequential mode does not zero the state on ``is_init`` (TorchRL's ``LSTMModule`` does): the
primer already zeroes it at every reset, and at the start of a collect the reference starts each
env, running episode or fresh one, from the burned-in state (on zero frames for a fresh episode),
which the collector writes over the primer's zeros.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from torch._C._functorch import is_batchedtensor
from tensordict.nn import (
    InteractionType,
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModuleBase,
)
from torchrl.data import Composite, Unbounded
from torchrl.envs import TensorDictPrimer
from torchrl.modules import recurrent_mode

from torchrl_deltairis import functional, keys
from torchrl_deltairis.modules.actor_critic import CnnLstmActorCritic

__all__ = ["ActorCriticTrunk", "make_actor", "make_value_operator", "burn_in", "recurrent_state_spec",
           "recurrent_state_primer", "CollectBurnIn"]


def recurrent_state_spec(lstm_dim: int, state_keys: tuple[str, str] = (keys.RECURRENT_STATE_H,
                                                                       keys.RECURRENT_STATE_C),
                         device: torch.device | str | None = None) -> Composite:
    """Unbatched specs of the LSTM state keys (for ``ImaginationEnv(policy_state_spec=...)``)."""
    return Composite({k: Unbounded(shape=(lstm_dim,), device=device) for k in state_keys}, device=device)


def recurrent_state_primer(lstm_dim: int, state_keys: tuple[str, str] = (
        keys.RECURRENT_STATE_H, keys.RECURRENT_STATE_C)) -> TensorDictPrimer:
    """Append to a real env (``env.append_transform(...)``) so that ``step_mdp`` carries the LSTM state
    the policy writes under ``("next", ...)``; resets fill zeros."""
    return TensorDictPrimer(recurrent_state_spec(lstm_dim, state_keys), expand_specs=True)


def value_from_logits(net: CnnLstmActorCritic, value_logits: torch.Tensor) -> torch.Tensor:
    """The scalar value ``[..., 1]``: two-hot expectation (symexp) or the scalar head itself."""
    if net.config.value_head == "two_hot":
        return functional.two_hot_expectation(value_logits).unsqueeze(-1)
    return value_logits


@torch.no_grad()
def burn_in(net: CnnLstmActorCritic, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The LSTM state after ``frames`` ``[B, T, C, H, W]`` (uint8 or float) from zeros; T may be 0."""
    frames = functional.pixels_to_float(frames)
    if frames.size(1) == 0:
        return net.initial_state(frames)
    out = net.unroll(frames)
    return out.hx, out.cx


class ActorCriticTrunk(TensorDictModuleBase):
    """CnnLstmActorCritic on TensorDicts (see the module docstring).

    Args:
        net: the network (the online model, or the EMA target for a target trunk).
        state_keys: where its (hx, cx) live; a target trunk uses its own keys.
        logits_key, value_logits_key, value_key: output keys.
        write_values: write the critic's outputs too (the acting policy leaves them out: rollouts
            then hold no stale ``"state_value"`` for TorchRL's value estimators).
    """

    def __init__(self, net: CnnLstmActorCritic, *, pixels_key: str = keys.PIXELS,
                 state_keys: tuple[str, str] = (keys.RECURRENT_STATE_H, keys.RECURRENT_STATE_C),
                 is_init_key: str = keys.IS_INIT, logits_key: str = keys.LOGITS,
                 value_logits_key: str = keys.VALUE_LOGITS, value_key: str = keys.STATE_VALUE,
                 write_values: bool = True) -> None:
        super().__init__()
        self.net = net
        self.pixels_key, self.state_keys, self.is_init_key = pixels_key, tuple(state_keys), is_init_key
        self.logits_key, self.value_logits_key, self.value_key = logits_key, value_logits_key, value_key
        self.write_values = write_values
        self.in_keys = [pixels_key, *self.state_keys, is_init_key]
        values = [value_logits_key, value_key] if write_values else []
        self.out_keys = [logits_key, *values, *(("next", k) for k in self.state_keys)]

    def with_values(self, write_values: bool) -> "ActorCriticTrunk":
        """A trunk over the same network and keys that writes the critic's outputs or not."""
        return ActorCriticTrunk(self.net, pixels_key=self.pixels_key, state_keys=self.state_keys,
                                is_init_key=self.is_init_key, logits_key=self.logits_key,
                                value_logits_key=self.value_logits_key, value_key=self.value_key,
                                write_values=write_values)

    @property
    def lstm_dim(self) -> int:
        return self.net.config.lstm_dim

    @property
    def spec(self) -> Composite:
        """Unbatched specs of every output key (a TorchRL ``Collector`` reads them to know, before
        the first step, which keys to copy back from the policy's device)."""
        net_cfg = self.net.config
        out = {self.logits_key: Unbounded(shape=(net_cfg.num_actions,))}
        if self.write_values:
            out[self.value_logits_key] = Unbounded(shape=(net_cfg.num_value_outputs,))
            out[self.value_key] = Unbounded(shape=(1,))
        out["next"] = Composite({k: Unbounded(shape=(self.lstm_dim,)) for k in self.state_keys})
        return Composite(out)

    def make_tensordict_primer(self) -> TensorDictPrimer:
        """The ``TensorDictPrimer`` that puts this trunk's state keys in a real env's specs (zeros at
        every reset), so that ``step_mdp`` carries the state: ``env.append_transform(...)``."""
        return recurrent_state_primer(self.lstm_dim, self.state_keys)

    def _initial_state(self, td: TensorDictBase, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = (td.get(k, None) for k in self.state_keys)
        if h is None or c is None:
            zeros = frames.new_zeros(*frames.shape[:-3], self.net.config.lstm_dim)
            return zeros, zeros.clone()
        return h, c

    def _reset_where_init(self, td: TensorDictBase, h: torch.Tensor, c: torch.Tensor):
        is_init = td.get(self.is_init_key, None)
        if is_init is None:
            return h, c
        keep = is_init.logical_not().to(h.dtype)
        return h * keep, c * keep

    def _write(self, td: TensorDictBase, logits, value_logits, h, c) -> TensorDictBase:
        td.set(self.logits_key, logits)
        if self.write_values:
            td.set(self.value_logits_key, value_logits)
            td.set(self.value_key, value_from_logits(self.net, value_logits))
        td.set(("next", self.state_keys[0]), h)
        td.set(("next", self.state_keys[1]), c)
        return td

    def forward(self, td: TensorDictBase) -> TensorDictBase:
        frames = functional.pixels_to_float(td.get(self.pixels_key))
        if is_batchedtensor(frames):
            raise RuntimeError("ActorCriticTrunk cannot run under torch.vmap (PyTorch has no batching rule for "
                               "the LSTM cell): pass deactivate_vmap=True to the TorchRL loss and to its "
                               "make_value_estimator(...)")
        if recurrent_mode() and td.ndim >= 2:
            return self._sequence(td, frames)
        h, c = self._initial_state(td, frames)  # the TensorDict's state (see the module docstring)
        batch = frames.shape[:-3]
        out = self.net(frames.reshape(-1, *frames.shape[-3:]), h.reshape(-1, h.size(-1)),
                       c.reshape(-1, c.size(-1)))
        return self._write(td, *(x.reshape(*batch, x.size(-1)) for x in out))

    def _sequence(self, td: TensorDictBase, frames: torch.Tensor) -> TensorDictBase:
        """Recurrent mode over the last batch dim: ``[*B, T]`` from the state at t = 0."""
        *lead, t = td.batch_size
        flat = frames.reshape(-1, t, *frames.shape[-3:])
        h, c = self._initial_state(td, frames)
        h, c = (x.reshape(-1, t, x.size(-1)) for x in self._reset_where_init(td, h, c))
        is_init = td.get(self.is_init_key, None)
        keep = None if is_init is None else is_init.reshape(-1, t, 1).logical_not().to(h.dtype)
        features = self.net.cnn(flat.flatten(0, 1)).unflatten(0, flat.shape[:2])
        hx, cx, hs, cs = h[:, 0], c[:, 0], [], []
        for i in range(t):
            if keep is not None and i > 0:
                hx, cx = hx * keep[:, i], cx * keep[:, i]
            hx, cx = self.net.lstm(features[:, i], (hx, cx))
            hs.append(hx), cs.append(cx)
        hs, cs = torch.stack(hs, 1), torch.stack(cs, 1)
        logits, value_logits = self.net.actor_linear(hs), self.net.critic_linear(hs)
        return self._write(td, *(x.reshape(*lead, t, x.size(-1)) for x in (logits, value_logits, hs, cs)))


def make_actor(trunk: ActorCriticTrunk | CnnLstmActorCritic, *,
               action_key: str = keys.ACTION, keep_values: bool = False) -> ProbabilisticTensorDictSequential:
    """Categorical policy over the trunk's logits: writes ``action`` and ``action_log_prob``.

    The actor writes no values: given a bare network or a trunk that writes them, it runs a twin of
    the trunk without them (a rollout holding ``"state_value"`` at t but not at t + 1 breaks TorchRL's
    value estimators; :func:`make_value_operator` is the critic). ``keep_values``: a trunk that writes
    them keeps doing so (one pass for an action and its value, e.g. the play tool's agent).
    """
    if isinstance(trunk, CnnLstmActorCritic):
        trunk = ActorCriticTrunk(trunk, write_values=False)
    elif trunk.write_values and not keep_values:
        trunk = trunk.with_values(False)
    head = ProbabilisticTensorDictModule(
        in_keys={"logits": trunk.logits_key}, out_keys=[action_key],
        distribution_class=torch.distributions.Categorical, return_log_prob=True,
        log_prob_key=keys.ACTION_LOG_PROB, default_interaction_type=InteractionType.RANDOM)
    return ProbabilisticTensorDictSequential(trunk, head)


class ValueOperator(TensorDictModuleBase):
    """The critic of a trunk's network: reads what the trunk reads and writes ``"state_value"`` only
    (the trunk's logits and next state go to a scratch TensorDict), as TorchRL's value estimators and
    losses expect of a value network; in recurrent mode it unrolls the LSTM as the trunk does."""

    def __init__(self, trunk: ActorCriticTrunk) -> None:
        super().__init__()
        self.trunk = trunk if trunk.write_values else trunk.with_values(True)
        self.in_keys, self.out_keys = list(self.trunk.in_keys), [self.trunk.value_key]

    def forward(self, td: TensorDictBase) -> TensorDictBase:
        scratch = self.trunk(td.select(*self.in_keys, strict=False))  # the same tensors, a new TensorDict
        return td.set(self.trunk.value_key, scratch.get(self.trunk.value_key))


def make_value_operator(trunk: ActorCriticTrunk | CnnLstmActorCritic) -> ValueOperator:
    """The critic: ``"state_value"`` [..., 1] of the trunk's (or the bare network's) critic head, and
    nothing else written."""
    return ValueOperator(ActorCriticTrunk(trunk) if isinstance(trunk, CnnLstmActorCritic) else trunk)


class CollectBurnIn:
    """``EpisodeCollector(before_collect=...)``: at the start of a collect, the trunk's LSTM is run over
    the last ``burn_in_length`` stored frames of each env's running episode (zero frames before its
    start, or all zeros for an env whose episode has just begun, as the reference does), on the
    network's device. Returns the state as a TensorDict ``[num_envs]`` of the trunk's state keys; the
    collector writes it into the step it is about to take.

    With ``burn_in_length`` 0 the state is zeros (the reference resets the LSTM at every collect).
    Returns None (nothing to write) while ``policy.epsilon >= 1``: the uniform first epoch never calls
    the network, and the reference skips the burn-in then too.
    """

    def __init__(self, trunk: ActorCriticTrunk, store, burn_in_length: int, *, policy=None) -> None:
        if burn_in_length < 0:
            raise ValueError(f"burn_in_length must be >= 0, got {burn_in_length}")
        self.trunk, self.store, self.burn_in_length, self.policy = trunk, store, burn_in_length, policy

    def frames(self, num_envs: int, frame_shape: tuple[int, ...]) -> torch.Tensor:
        """uint8 ``[num_envs, burn_in_length, *frame_shape]``, the newest frame last."""
        out = torch.zeros(num_envs, self.burn_in_length, *frame_shape, dtype=torch.uint8)
        for env, episode in enumerate(self.store.open_episodes.tolist()[:num_envs]):
            if episode >= 0 and self.burn_in_length > 0:
                pixels = self.store.episode(episode).get(keys.PIXELS)[-self.burn_in_length:]
                out[env, self.burn_in_length - pixels.shape[0]:] = pixels
        return out

    def __call__(self, num_envs: int, frame_shape: tuple[int, ...]) -> TensorDict | None:
        if self.policy is not None and self.policy.epsilon >= 1:
            return None
        device = next(self.trunk.net.parameters()).device
        h, c = burn_in(self.trunk.net, self.frames(num_envs, frame_shape).to(device))
        return TensorDict(dict(zip(self.trunk.state_keys, (h, c))), batch_size=[num_envs], device=device)
