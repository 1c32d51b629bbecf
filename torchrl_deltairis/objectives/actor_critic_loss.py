"""The reference objective of the actor-critic, as a TorchRL ``LossModule``.

:class:`ImaginationActorCriticLoss`: λ-returns from the target values (TorchRL's ``TDLambdaEstimator``
with ``value_network=None``), REINFORCE with the target value as baseline, an entropy bonus, and a
value loss (two-hot cross-entropy on symlog returns, or MSE), each a mean over the masked steps.
Log-probs and values are recomputed in recurrent mode from the first step's LSTM state (equal to the
reference's values computed during the rollout; the gradients are the same, through the H LSTM steps).
Its keys are TorchRL-style ``_AcceptedKeys`` (``loss.set_keys(...)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase, TensorDictParams
from torchrl.modules import set_recurrent_mode
from torchrl.objectives import LossModule
from torchrl.objectives.value import TDLambdaEstimator

from torchrl_deltairis import functional, keys
from torchrl_deltairis.compat import loss_expects_target_updater
from torchrl_deltairis.modules.actor_critic import ActorCriticWithTarget
from torchrl_deltairis.objectives.loss_slot import ActorCriticLossConfig
from torchrl_deltairis.policy import ActorCriticTrunk


class ImaginationActorCriticLoss(LossModule):
    """The reference objective on :func:`imagine`'s output (see the module docstring).

    Writes ``loss_actions``, ``loss_values``, ``loss_entropy`` (sum them to train) and the detached
    metrics ``policy_entropy``, ``imagined_reward_abs`` (mean |reward| per imagined step) and
    ``advantage_abs`` (mean |λ-return − value|): the size of the signal the policy learns from.
    ``actor_critic_params`` / ``target_actor_critic_params`` hold the model's and the EMA target's
    parameters (shared with ``actor_critic``) for ``SoftUpdate``.
    """

    @dataclass
    class _AcceptedKeys:
        """Keys this loss reads and writes (``loss.set_keys(name=key)``; the estimator follows)."""

        action: Any = keys.ACTION
        target_value: Any = keys.TARGET_STATE_VALUE
        advantage: Any = keys.ADVANTAGE
        value_target: Any = keys.VALUE_TARGET
        reward: Any = keys.REWARD
        done: Any = keys.DONE
        terminated: Any = keys.TERMINATED
        mask: Any = keys.MASK

    default_keys = _AcceptedKeys

    def __init__(self, actor_critic: ActorCriticWithTarget, config: ActorCriticLossConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else ActorCriticLossConfig()
        self._tensor_keys = self._AcceptedKeys()
        self.trunk = ActorCriticTrunk(actor_critic.model)
        # the modules' own parameters (shared, not copies), named as SoftUpdate expects
        self.actor_critic_params = TensorDictParams(TensorDict.from_module(actor_critic.model),
                                                    no_convert=True)
        self.target_actor_critic_params = TensorDictParams(
            TensorDict.from_module(actor_critic.target_model), no_convert=True)
        loss_expects_target_updater(self, "actor_critic")  # SoftUpdate (make_target_updater) sets it
        self.lambda_returns = TDLambdaEstimator(gamma=self.config.gamma, lmbda=self.config.lambda_,
                                                value_network=None)
        self._forward_value_estimator_keys()

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        k = self.tensor_keys
        self.lambda_returns.set_keys(value=k.target_value, advantage=k.advantage, value_target=k.value_target,
                                     reward=k.reward, done=k.done, terminated=k.terminated)

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        k = self.tensor_keys
        td = tensordict.clone(False)
        with torch.no_grad():
            td = self.lambda_returns(td)
        with set_recurrent_mode(True):
            td = self.trunk(td)
        mask = td.get(k.mask)
        dist = torch.distributions.Categorical(logits=td.get(self.trunk.logits_key))
        advantage, returns = td.get(k.advantage)[..., 0], td.get(k.value_target)[..., 0]
        loss_actions = functional.masked_step_mean(-dist.log_prob(td.get(k.action)) * advantage, mask)
        value_logits = td.get(self.trunk.value_logits_key)
        if self.trunk.net.config.value_head == "two_hot":
            target = functional.two_hot(functional.symlog(returns))
            per_step = -(target * value_logits.log_softmax(-1)).sum(-1)
        else:
            per_step = (value_logits[..., 0] - returns).pow(2)
        entropy = functional.masked_step_mean(dist.entropy(), mask)
        # the size of the policy's learning signal, to read next to the entropy bonus: where the
        # imagined rewards and the advantages shrink, the bonus alone moves the policy (towards uniform)
        reward = td.get(("next", k.reward))[..., 0]
        return TensorDict(loss_actions=loss_actions, loss_values=functional.masked_step_mean(per_step, mask),
                          loss_entropy=-self.config.entropy_weight * entropy, policy_entropy=entropy.detach(),
                          imagined_reward_abs=functional.masked_step_mean(reward.abs(), mask).detach(),
                          advantage_abs=functional.masked_step_mean(advantage.abs(), mask).detach())
