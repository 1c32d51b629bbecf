"""The actor-critic's loss slot: the reference objective, stock TorchRL losses, or a user's own.

The contract (``params.actor_critic.loss``, README "Losses")
---------------------------------------------------------------
**Which loss.** A name (:data:`NAMED_LOSSES`: ``reinforce``, the reference's objective; ``a2c``;
``ppo``; ``sac``), or a node ``{_target_: dotted.path.To.Class, <kwarg>: <value>, ...}`` naming any
TorchRL ``LossModule`` class (a user's own included). The class is built with the node's kwargs plus,
for each of these parameters that its ``__init__`` accepts and the node does not set:

- ``actor_network``: :func:`~torchrl_deltairis.policy.make_actor` over the online network (a
  ``ProbabilisticTensorDictSequential``: ``"logits"`` → ``"action"``, ``"action_log_prob"``);
- ``critic_network`` / ``value_network``: ``policy.make_value_operator`` (the same network, writing ``"state_value"`` [..., 1] only);
- ``qvalue_network``: :class:`QValueHead`, a Q head (``"action_value"`` [..., A]) on the same CNN-LSTM;
- ``actor_critic``: the :class:`~torchrl_deltairis.modules.ActorCriticWithTarget` itself;
- ``config``: the :class:`ActorCriticLossConfig`;
- ``num_actions``, ``action_space="categorical"``, ``entropy_coeff`` (= ``entropy_weight``),
  ``clip_epsilon`` (= ``ppo_clip_epsilon``), ``functional=False``, ``deactivate_vmap=True`` (vmap has no
  batching rule for ``lstm_cell``), ``loss_critic_type="l2"``, and on-policy ``reduction="none"``
  (per-step terms, then averaged over the mask, see below).

**Value estimator.** If the loss has ``make_value_estimator``, it gets TorchRL's ``TDLambda`` (γ, λ)
for on-policy updates and ``TD0`` (γ) for off-policy ones (``updates.value_estimator`` overrides:
``td_lambda | td0 | none``, none keeping the loss's own).

**Target networks.** If the loss owns target parameters (TorchRL's ``target_*_params``), they move
through TorchRL's ``SoftUpdate`` (eps = ``target_ema_decay``) after every optimiser step.

**What the loss receives.** On-policy (``updates.mode: on_policy``): :func:`imagine`'s rollout ``[B, H]``
(or a minibatch of its rows): ``"pixels"``, ``"action"``, ``"action_log_prob"``, ``"logits"``,
``"recurrent_state_h/c"`` (the LSTM state the step started from), ``"is_init"``, ``("next", ...)``
with ``"pixels"``, ``"reward"``, ``"done"``, ``"terminated"``, ``"truncated"``, the next LSTM state, and
``("collector", "mask")`` (True up to the first predicted end); with the reference objective also
``"target_state_value"``, its ``("next", ...)`` twin and ``"target_recurrent_state_h/c"``. The
advantage of a loss with a value estimator is computed once per imagined batch, before the first
update. ``updates.epochs`` passes of ``updates.num_minibatches`` row minibatches each make one
optimiser step. Off-policy (``mode: off_policy``): a stock ``Collector`` on the imagination env fills a
stock ``TensorDictReplayBuffer`` with the masked imagined steps (one step per row, the same keys,
``[N]``); each imagined batch is followed by ``num_minibatches`` updates on ``replay_batch_size``
samples.

**How its output is summed.** Every ``loss_*`` entry is a term of the objective: a term shaped like
the batch (``reduction="none"``) is averaged over the masked steps, any other is averaged as is; the
terms are added. Other entries are logged (their mean).

The reference objective
-----------------------
:class:`ImaginationActorCriticLoss`: λ-returns from the target values (TorchRL's ``TDLambdaEstimator``
with ``value_network=None``), REINFORCE with the target value as baseline, an entropy bonus, and a
value loss (two-hot cross-entropy on symlog returns, or MSE), each a mean over the masked steps.
Log-probs and values are recomputed in recurrent mode from the first step's LSTM state (equal to the
reference's values computed during the rollout; the gradients are the same, through the H LSTM steps).
Its keys are TorchRL-style ``_AcceptedKeys`` (``loss.set_keys(...)``).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase, TensorDictParams
from tensordict.nn import TensorDictModuleBase
from torchrl.modules import set_recurrent_mode
from torchrl.objectives import LossModule, SoftUpdate, ValueEstimators
from torchrl.objectives.value import TDLambdaEstimator

from torchrl_deltairis import functional, keys
from torchrl_deltairis.compat import loss_expects_target_updater
from torchrl_deltairis.modules.actor_critic import ActorCriticWithTarget, CnnLstmActorCritic
from torchrl_deltairis.policy import ActorCriticTrunk, make_actor, make_value_operator

__all__ = ["ActorCriticLossConfig", "ImaginationActorCriticLoss", "LossUpdates", "MaskedLoss", "NAMED_LOSSES",
           "QValueHead", "build_actor_critic_loss", "make_target_updater", "minibatches", "resolve_loss",
           "uses_value_estimator"]

NAMED_LOSSES: dict[str, dict[str, Any]] = {
    "reinforce": {"_target_": "torchrl_deltairis.objectives.actor_critic_loss.ImaginationActorCriticLoss"},
    "a2c": {"_target_": "torchrl.objectives.A2CLoss"},
    "ppo": {"_target_": "torchrl.objectives.ClipPPOLoss", "normalize_advantage": False},
    "sac": {"_target_": "torchrl.objectives.DiscreteSACLoss"},
}
_UPDATE_DEFAULTS = {  # (mode, epochs, num_minibatches) when params.actor_critic.updates leaves them null
    "reinforce": ("on_policy", 1, 1), "a2c": ("on_policy", 1, 1), "ppo": ("on_policy", 4, 4),
    "sac": ("off_policy", 1, 1),
}
UPDATE_MODES = ("on_policy", "off_policy")
VALUE_ESTIMATORS = ("td_lambda", "td0", "none")


@dataclass
class LossUpdates:
    """How imagined data feeds the loss (``params.actor_critic.updates``; None: the loss's default)."""

    mode: str | None = None
    """on_policy (each imagined batch, then discarded) | off_policy (a replay buffer of imagined steps)"""
    epochs: int | None = None
    """on-policy: passes over each imagined batch"""
    num_minibatches: int | None = None
    """on-policy: row minibatches per pass; off-policy: replay samples per imagined batch"""
    value_estimator: str | None = None
    """td_lambda | td0 | none (the loss's own); default: td_lambda on-policy, td0 off-policy"""
    replay_capacity: int = 100_000
    replay_batch_size: int = 256


@dataclass
class ActorCriticLossConfig:
    """Actor-critic objective; defaults are the shipped Crafter values (Atari: γ 0.995, η 0.002)."""

    loss: Any = "reinforce"
    """a name of NAMED_LOSSES, or a mapping with ``_target_`` (a LossModule class) and its kwargs"""
    gamma: float = 0.997
    lambda_: float = 0.95
    entropy_weight: float = 0.001
    ppo_clip_epsilon: float = 0.2
    """passed as clip_epsilon to a loss that takes it (ClipPPOLoss)"""
    target_ema_decay: float = 0.995
    """SoftUpdate eps: target ← eps·target + (1 - eps)·model"""
    updates: LossUpdates = field(default_factory=LossUpdates)

    def __post_init__(self) -> None:
        if isinstance(self.updates, Mapping):
            self.updates = LossUpdates(**_known(self.updates, LossUpdates, "params.actor_critic.updates"))
        resolve_loss(self)  # fails on a bad name, target, kwarg or update value

    @classmethod
    def from_config(cls, node: Mapping) -> ActorCriticLossConfig:
        """From ``params.actor_critic`` (a plain mapping; keys that are not fields are ignored there,
        as that node also holds the model and the schedule)."""
        kwargs = {f.name: node[f.name] for f in fields(cls) if f.name in node and node[f.name] is not None}
        return cls(**kwargs)


def _known(node: Mapping, cls, where: str) -> dict:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(node) - names)
    if unknown:
        raise ValueError(f"{where}.{unknown[0]} is not a key; expected one of {sorted(names)}")
    return dict(node)


def _import(path: str, where: str):
    module_name, _, name = str(path).rpartition(".")
    try:
        value = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        raise ValueError(f"{where}={path!r} cannot be imported; expected a dotted path to a "
                         "torchrl LossModule class") from None
    if not (inspect.isclass(value) and issubclass(value, LossModule)):
        raise ValueError(f"{where}={path!r} is not a torchrl LossModule class")
    return value


@dataclass
class ResolvedLoss:
    name: str | None  # the NAMED_LOSSES name, or None for a user's _target_
    cls: type
    kwargs: dict
    mode: str
    epochs: int
    num_minibatches: int
    value_estimator: str


_KWARGS_READ = re.compile(r"""["'](\w+)["']\s+in\s+kwargs|kwargs(?:\.get|\.pop|\.setdefault)?[\[(]\s*["'](\w+)["']""")


def accepted_kwargs(cls: type) -> set[str] | None:
    """The keyword arguments ``cls(...)`` takes. A class whose ``__init__`` takes ``**kwargs`` (TorchRL's
    PPO and A2C losses) passes them to its parents' ``__init__`` or reads a few itself (deprecated
    names): the named parameters along the MRO up to the first ``__init__`` without ``**kwargs``, plus
    the names its source reads from ``kwargs``. None (anything goes) where the source cannot be read."""
    accepted: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters
        accepted |= {name for name, p in params.items() if name != "self"
                     and p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)}
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return accepted
        try:
            source = inspect.getsource(init)
        except (OSError, TypeError):
            return None
        accepted |= {a or b for a, b in _KWARGS_READ.findall(source)}
    return accepted


def resolve_loss(config: ActorCriticLossConfig) -> ResolvedLoss:
    """The class, its kwargs and the update scheme that ``config`` names; every value checked."""
    where = "params.actor_critic.loss"
    node = config.loss
    if isinstance(node, str):
        if node not in NAMED_LOSSES:
            raise ValueError(f"{where}={node!r}; expected one of {list(NAMED_LOSSES)} or a node with _target_")
        name, node = node, NAMED_LOSSES[node]
    elif isinstance(node, Mapping) and "_target_" in node:
        name = next((n for n, v in NAMED_LOSSES.items() if v["_target_"] == node["_target_"]), None)
    else:
        raise ValueError(f"{where}={node!r}; expected one of {list(NAMED_LOSSES)} or a node with _target_")
    cls = _import(node["_target_"], f"{where}._target_")
    kwargs = {k: v for k, v in node.items() if k != "_target_"}
    accepted = accepted_kwargs(cls)
    for key in kwargs:
        if accepted is not None and key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=3)
            raise ValueError(f"{where}.{key} is not a parameter of {cls.__name__}"
                             + (f"; close matches: {close}" if close else f"; expected one of {sorted(accepted)}"))
    u = config.updates
    mode, epochs, minibatches = _UPDATE_DEFAULTS.get(name, ("on_policy", 1, 1))
    mode = u.mode if u.mode is not None else mode
    epochs = u.epochs if u.epochs is not None else epochs
    minibatches = u.num_minibatches if u.num_minibatches is not None else minibatches
    if mode not in UPDATE_MODES:
        raise ValueError(f"params.actor_critic.updates.mode={mode!r}; expected one of {list(UPDATE_MODES)}")
    for key, value in (("epochs", epochs), ("num_minibatches", minibatches),
                       ("replay_capacity", u.replay_capacity), ("replay_batch_size", u.replay_batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"params.actor_critic.updates.{key}={value!r}; expected an integer >= 1")
    estimator = u.value_estimator or ("td_lambda" if mode == "on_policy" else "td0")
    if estimator not in VALUE_ESTIMATORS:
        raise ValueError(f"params.actor_critic.updates.value_estimator={estimator!r}; expected one of "
                         f"{list(VALUE_ESTIMATORS)}")
    if name == "reinforce" and mode == "off_policy":
        raise ValueError("params.actor_critic.updates.mode='off_policy' with the reinforce loss; the reference "
                         "objective needs whole imagined sequences (use on_policy)")
    return ResolvedLoss(name, cls, kwargs, mode, epochs, minibatches, estimator)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp_min(1)


class ImaginationActorCriticLoss(LossModule):
    """The reference objective on :func:`imagine`'s output (see the module docstring).

    Writes ``loss_actions``, ``loss_values``, ``loss_entropy`` (sum them to train) and the detached
    metric ``policy_entropy``. ``actor_critic_params`` / ``target_actor_critic_params`` hold the
    model's and the EMA target's parameters (shared with ``actor_critic``) for ``SoftUpdate``.
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
        loss_actions = _masked_mean(-dist.log_prob(td.get(k.action)) * advantage, mask)
        value_logits = td.get(self.trunk.value_logits_key)
        if self.trunk.net.config.value_head == "two_hot":
            target = functional.two_hot(functional.symlog(returns))
            per_step = -(target * value_logits.log_softmax(-1)).sum(-1)
        else:
            per_step = (value_logits[..., 0] - returns).pow(2)
        entropy = _masked_mean(dist.entropy(), mask)
        return TensorDict(loss_actions=loss_actions, loss_values=_masked_mean(per_step, mask),
                          loss_entropy=-self.config.entropy_weight * entropy, policy_entropy=entropy.detach())


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
                reduced[key] = _masked_mean(value, mask)
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
    resolved = resolve_loss(config)
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
