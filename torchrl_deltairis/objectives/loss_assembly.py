"""The loss slot's loss, built and fed: the class that ``params.actor_critic.loss`` names (checked by
:mod:`~torchrl_deltairis.objectives.loss_slot`) with the networks and kwargs it takes, its value
estimator and target updater, the masked reduction of its terms, the minibatches of an imagined batch.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.objectives import LossModule, SoftUpdate, ValueEstimators

from torchrl_deltairis import functional, keys
from torchrl_deltairis.modules.actor_critic import ActorCriticWithTarget, CnnLstmActorCritic
from torchrl_deltairis.objectives.loss_slot import ActorCriticLossConfig, ResolvedLoss
from torchrl_deltairis.policy import make_actor, make_value_operator


class QValueHead(TensorDictModuleBase):
    """Q values ``"action_value"`` [..., A] on the actor-critic's CNN-LSTM (shared with the policy):
    one LSTM step from the step's state, then a linear head of its own (zero-initialised). Used by
    off-policy losses such as TorchRL's ``DiscreteSACLoss`` (``qvalue_network``)."""

    def __init__(self, net: CnnLstmActorCritic, *, out_key: str = "action_value",
                 state_keys: tuple[str, str] = (keys.RECURRENT_STATE_H, keys.RECURRENT_STATE_C)) -> None:
        super().__init__()
        self.net, self.state_keys = net, tuple(state_keys)
        # on the network's device: the loss then makes its target copies there too
        self.head = torch.nn.Linear(net.config.lstm_dim, net.config.num_actions, device=next(net.parameters()).device)
        torch.nn.init.zeros_(self.head.weight), torch.nn.init.zeros_(self.head.bias)
        self.in_keys, self.out_keys = [keys.PIXELS, *self.state_keys], [out_key]

    def forward(self, td: TensorDictBase) -> TensorDictBase:
        frames = functional.pixels_to_float(td.get(keys.PIXELS))
        batch = frames.shape[:-3]
        h, c = (td.get(k).reshape(-1, self.net.config.lstm_dim) for k in self.state_keys)
        hx, _ = self.net.lstm(self.net.cnn(frames.reshape(-1, *frames.shape[-3:])), (h, c))
        return td.set(self.out_keys[0], self.head(hx).reshape(*batch, -1))


def _has_targets(loss: LossModule) -> bool:
    return any(n.startswith("target_") and n.endswith("_params") for n, _ in loss.named_children())


def make_target_updater(loss: LossModule, eps: float) -> SoftUpdate | None:
    """TorchRL's ``SoftUpdate`` of every target the loss owns (None when it owns none). It keeps the
    targets' current weights (``SoftUpdate`` would otherwise copy the sources into them on
    construction, which would reset the reference's EMA critic loaded from a checkpoint)."""
    if not _has_targets(loss):
        return None
    targets = {n: m for n, m in loss.named_children() if n.startswith("target_") and n.endswith("_params")}
    saved = {n: m.data.clone() for n, m in targets.items()}
    updater = SoftUpdate(loss, eps=eps)
    for n, m in targets.items():
        m.data.update_(saved[n])
    return updater


class MaskedLoss(torch.nn.Module):
    """Applies the contract's reduction: ``loss_*`` terms shaped like the batch are averaged over
    ``("collector", "mask")`` (all steps where there is no mask), the others averaged as they are."""

    def __init__(self, loss: LossModule, mask_key=keys.MASK) -> None:
        super().__init__()
        self.loss, self.mask_key = loss, mask_key

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        out = self.loss(tensordict)
        mask = tensordict.get(self.mask_key, None)
        reduced = {}
        for key, value in out.items():
            if not torch.is_tensor(value):
                continue
            if (mask is not None and value.ndim >= mask.ndim and value.shape[:mask.ndim] == mask.shape
                    and value.ndim > 0):
                value = value.reshape(*mask.shape, -1).mean(-1)
                reduced[key] = functional.masked_step_mean(value, mask)
            else:
                reduced[key] = value.float().mean()
        return TensorDict(reduced)


def uses_value_estimator(loss: LossModule, resolved: ResolvedLoss) -> bool:
    """Whether the loss gets one of TorchRL's value estimators (it implements ``make_value_estimator``;
    the reference objective computes its own λ-returns)."""
    own = type(loss).make_value_estimator is not LossModule.make_value_estimator
    return own and resolved.value_estimator != "none" and resolved.name != "reinforce"


def build_actor_critic_loss(actor_critic: ActorCriticWithTarget, config: ActorCriticLossConfig) -> LossModule:
    """The loss ``config.loss`` names, built by the contract of the module docstring."""
    resolved = config.resolved
    net = actor_critic.model
    critic = make_value_operator(net)
    offers = {"actor_network": lambda: make_actor(net),
              "critic_network": lambda: critic, "value_network": lambda: critic,
              "qvalue_network": lambda: QValueHead(net), "actor_critic": lambda: actor_critic,
              "config": lambda: config, "num_actions": lambda: net.config.num_actions,
              "entropy_coeff": lambda: config.entropy_weight, "clip_epsilon": lambda: config.ppo_clip_epsilon,
              "action_space": lambda: "categorical", "functional": lambda: False, "deactivate_vmap": lambda: True,
              "loss_critic_type": lambda: "l2"}
    params = inspect.signature(resolved.cls.__init__).parameters
    if resolved.mode == "on_policy":  # per-step terms, averaged over the mask by MaskedLoss
        offers["reduction"] = lambda: "none"
    kwargs = {name: make() for name, make in offers.items() if name in params and name not in resolved.kwargs}
    loss = resolved.cls(**kwargs, **resolved.kwargs)
    if uses_value_estimator(loss, resolved):
        vmap = {} if hasattr(loss, "deactivate_vmap") else {"deactivate_vmap": True}  # else the loss passes its own
        if resolved.value_estimator == "td_lambda":
            loss.make_value_estimator(ValueEstimators.TDLambda, gamma=config.gamma, lmbda=config.lambda_, **vmap)
        else:
            loss.make_value_estimator(ValueEstimators.TD0, gamma=config.gamma, **vmap)
    return loss


def minibatches(data: TensorDictBase, epochs: int, num_minibatches: int,
                generator: torch.Generator | None = None) -> Iterator[TensorDictBase]:
    """``epochs`` passes over the rows of ``data`` in ``num_minibatches`` shuffled minibatches each (one
    pass, unshuffled, when both are 1: the reference's single update)."""
    rows = data.batch_size[0]
    if epochs == 1 and num_minibatches == 1:
        yield data
        return
    if num_minibatches > rows:
        raise ValueError(f"params.actor_critic.updates.num_minibatches={num_minibatches} exceeds the "
                         f"{rows} imagined rows per batch (params.training.actor_critic.batch_num_samples)")
    for _ in range(epochs):
        order = torch.randperm(rows, generator=generator).to(data.device)
        for part in order.tensor_split(num_minibatches):
            yield data[part]
