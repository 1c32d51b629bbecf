"""The actor-critic objective on imagined trajectories (SPEC A.6), and stock TorchRL alternatives.

:func:`imagine` turns a batch of real segments into imagined trajectories ``[B, H]``: both LSTMs burn
in over the context frames, the imagination env is reset from the context, the policy acts for H
steps through ``env.rollout`` (no gradients), and the EMA target critic is run over the H imagined
frames plus the last next frame, giving ``"target_state_value"`` and its ``("next", ...)`` twin (the
last one is the bootstrap). ``("collector", "mask")`` marks the steps up to the first imagined end.

:class:`ImaginationActorCriticLoss` is the reference objective: λ-returns from the target values
(TorchRL's ``TDLambdaEstimator`` with ``value_network=None``), REINFORCE with the target value as
baseline, an entropy bonus, and a value loss (two-hot cross-entropy on symlog returns, or MSE), each
a mean over the masked steps. Log-probs and values are recomputed in recurrent mode from the first
step's LSTM state (equal to the reference's values computed during the rollout; the gradients are the
same, through the H LSTM steps). :func:`make_target_updater` gives TorchRL's ``SoftUpdate`` over the
EMA target (call ``.step()`` after each optimiser step). :func:`make_actor_critic_loss` builds the
loss named by ``ActorCriticLossConfig.loss``: ``reinforce`` (the above), or TorchRL's ``A2CLoss`` /
``ClipPPOLoss`` with a stock TD(λ) estimator over the online critic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from tensordict import TensorDict, TensorDictBase, TensorDictParams
from torchrl.envs import EnvBase
from torchrl.modules import set_recurrent_mode
from torchrl.objectives import A2CLoss, ClipPPOLoss, LossModule, SoftUpdate, ValueEstimators
from torchrl.objectives.value import TDLambdaEstimator

from torchrl_deltairis import functional, keys
from torchrl_deltairis.modules.actor_critic import ActorCriticWithTarget
from torchrl_deltairis.policy import ActorCriticTrunk, burn_in, make_actor, value_from_logits

__all__ = ["ActorCriticLossConfig", "ImaginationActorCriticLoss", "imagine", "make_actor_critic_loss",
           "make_target_updater"]

_LOSSES = ("reinforce", "a2c", "ppo")


@dataclass
class ActorCriticLossConfig:
    """Actor-critic objective; defaults are the shipped Crafter values (Atari: γ 0.995, η 0.002)."""

    loss: Literal["reinforce", "a2c", "ppo"] = "reinforce"
    """'reinforce': the reference objective; 'a2c' / 'ppo': TorchRL's A2CLoss / ClipPPOLoss"""
    gamma: float = 0.997
    lambda_: float = 0.95
    entropy_weight: float = 0.001
    ppo_clip_epsilon: float = 0.2
    """ClipPPOLoss only"""
    target_ema_decay: float = 0.995
    """SoftUpdate eps: target ← eps·target + (1 - eps)·model"""

    def __post_init__(self) -> None:
        if self.loss not in _LOSSES:
            raise ValueError(f"loss={self.loss!r}; valid choices are {list(_LOSSES)}")


@torch.no_grad()
def imagine(env: EnvBase, actor, actor_critic: ActorCriticWithTarget, context: TensorDictBase,
            horizon: int) -> TensorDictBase:
    """Imagined trajectories ``[B, H]`` from ``context`` (``"pixels"`` [B, L+1, ...], ``"action"`` [B, L]).

    ``actor`` is a TensorDict policy over ``actor_critic.model`` reading ``recurrent_state_h/c``
    (e.g. :func:`torchrl_deltairis.policy.make_actor`); sampling follows the exploration type.
    """
    frames, actions = context.get(keys.PIXELS), context.get(keys.ACTION)
    h, c = burn_in(actor_critic.model, frames[:, :-1])
    th, tc = burn_in(actor_critic.target_model, frames[:, :-1])
    start = TensorDict({keys.CONTEXT: TensorDict({keys.PIXELS: frames, keys.ACTION: actions},
                                                  batch_size=actions.shape[:1]),
                        keys.RECURRENT_STATE_H: h, keys.RECURRENT_STATE_C: c}, batch_size=actions.shape[:1])
    start = env.reset(start).exclude(keys.CONTEXT)
    rollout = env.rollout(horizon, actor, tensordict=start, auto_reset=False, break_when_any_done=False,
                          return_contiguous=True)
    seen = torch.cat((rollout.get(keys.PIXELS), rollout.get(keys.NEXT_PIXELS)[:, -1:]), dim=1)
    out = actor_critic.target_model.unroll(functional.pixels_to_float(seen), th, tc)
    values = value_from_logits(actor_critic.target_model, out.logits_values)  # [B, H+1, 1]
    rollout.set(keys.TARGET_STATE_VALUE, values[:, :-1])
    rollout.set(("next", keys.TARGET_STATE_VALUE), values[:, 1:])
    rollout.set(keys.TARGET_RECURRENT_STATE_H, th.unsqueeze(1).expand(-1, horizon, -1))
    rollout.set(keys.TARGET_RECURRENT_STATE_C, tc.unsqueeze(1).expand(-1, horizon, -1))
    rollout.set(keys.MASK, functional.mask_after_first_done(ends=rollout.get(keys.NEXT_TERMINATED)[..., 0]))
    return rollout


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp_min(1)


class ImaginationActorCriticLoss(LossModule):
    """The reference objective on :func:`imagine`'s output (see the module docstring).

    Writes ``loss_actions``, ``loss_values``, ``loss_entropy`` (sum them to train) and the detached
    metric ``policy_entropy``. ``actor_critic_params`` / ``target_actor_critic_params`` hold the
    model's and the EMA target's parameters (shared with ``actor_critic``) for ``SoftUpdate``.
    """

    def __init__(self, actor_critic: ActorCriticWithTarget, config: ActorCriticLossConfig) -> None:
        super().__init__()
        self.config = config
        self.trunk = ActorCriticTrunk(actor_critic.model)
        # the modules' own parameters (shared, not copies), named as SoftUpdate expects
        self.actor_critic_params = TensorDictParams(TensorDict.from_module(actor_critic.model),
                                                    no_convert=True)
        self.target_actor_critic_params = TensorDictParams(
            TensorDict.from_module(actor_critic.target_model), no_convert=True)
        self._has_update_associated["actor_critic"] = False  # set by SoftUpdate (make_target_updater)
        self.lambda_returns = TDLambdaEstimator(gamma=config.gamma, lmbda=config.lambda_, value_network=None)
        self.lambda_returns.set_keys(value=keys.TARGET_STATE_VALUE)

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        td = tensordict.clone(False)
        with torch.no_grad():
            td = self.lambda_returns(td)
        with set_recurrent_mode(True):
            td = self.trunk(td)
        mask = td.get(keys.MASK)
        dist = torch.distributions.Categorical(logits=td.get(keys.LOGITS))
        advantage, returns = td.get(keys.ADVANTAGE)[..., 0], td.get(keys.VALUE_TARGET)[..., 0]
        loss_actions = _masked_mean(-dist.log_prob(td.get(keys.ACTION)) * advantage, mask)
        value_logits = td.get(keys.VALUE_LOGITS)
        if self.trunk.net.config.value_head == "two_hot":
            target = functional.two_hot(functional.symlog(returns))
            per_step = -(target * value_logits.log_softmax(-1)).sum(-1)
        else:
            per_step = (value_logits[..., 0] - returns).pow(2)
        entropy = _masked_mean(dist.entropy(), mask)
        return TensorDict(loss_actions=loss_actions, loss_values=_masked_mean(per_step, mask),
                          loss_entropy=-self.config.entropy_weight * entropy, policy_entropy=entropy.detach())


def make_actor_critic_loss(actor_critic: ActorCriticWithTarget, config: ActorCriticLossConfig) -> LossModule:
    """The loss named by ``config.loss``; each reads :func:`imagine`'s TensorDict and the mask."""
    if config.loss == "reinforce":
        return ImaginationActorCriticLoss(actor_critic, config)
    trunk = ActorCriticTrunk(actor_critic.model)
    common = dict(actor_network=make_actor(trunk), critic_network=trunk, entropy_coeff=config.entropy_weight,
                  loss_critic_type="l2", functional=False)
    if config.loss == "a2c":
        loss = A2CLoss(**common)
    else:
        loss = ClipPPOLoss(**common, clip_epsilon=config.ppo_clip_epsilon, normalize_advantage=False)
    # vmap has no batching rule for lstm_cell: the estimator calls the critic on root and next in turn
    loss.make_value_estimator(ValueEstimators.TDLambda, gamma=config.gamma, lmbda=config.lambda_,
                              deactivate_vmap=True)
    return loss


def make_target_updater(loss: ImaginationActorCriticLoss, eps: float | None = None) -> SoftUpdate:
    """TorchRL's ``SoftUpdate`` of the EMA target; keeps the target's current weights (``SoftUpdate``
    would otherwise copy the model into it on construction)."""
    saved = loss.target_actor_critic_params.data.clone()
    updater = SoftUpdate(loss, eps=loss.config.target_ema_decay if eps is None else eps)
    loss.target_actor_critic_params.data.update_(saved)
    return updater
