"""The actor-critic's loss slot: the reference objective, stock TorchRL losses, or a user's own.

The actor-critic's loss slot: which loss (``params.actor_critic.loss``), checked before any work.

The contract (README "Losses"; built by :mod:`~torchrl_deltairis.objectives.loss_assembly`)
--------------------------------------------------------------------------------------
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
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from torchrl.objectives import LossModule

from torchrl_deltairis.checked import parse, setting


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

    mode: str | None = setting(None, doc="on_policy (each imagined batch, then discarded) | off_policy (a replay "
                                         "buffer of imagined steps); null: the loss's default")
    epochs: int | None = setting(None, doc="on-policy: passes over each imagined batch; null: the loss's default")
    num_minibatches: int | None = setting(None, doc="on-policy: row minibatches per pass; off-policy: replay samples "
                                                    "per imagined batch; null: the loss's default")
    value_estimator: str | None = setting(None, doc="td_lambda | td0 | none (the loss's own); null: td_lambda "
                                                    "on-policy, td0 off-policy")
    replay_capacity: int = setting(100_000, doc="off-policy: imagined steps the replay buffer holds")
    replay_batch_size: int = setting(256, doc="off-policy: imagined steps per update")


@dataclass
class ActorCriticLossConfig:
    """Actor-critic objective (``params.actor_critic``'s loss fields); defaults are the shipped Crafter
    values (Atari: γ 0.995, η 0.002). Built, it is resolved once (:attr:`resolved`: the class, its kwargs
    and the update scheme), which checks every value."""

    loss: Any = setting("reinforce", doc="a name of NAMED_LOSSES, or a mapping with _target_ (a LossModule "
                                         "class) and its kwargs")
    gamma: float = setting(0.997, doc="discount factor", low=0, high=1)
    lambda_: float = setting(0.95, doc="λ of the λ-returns", low=0, high=1)
    entropy_weight: float = setting(0.001, doc="weight of the policy's entropy bonus", low=0)
    ppo_clip_epsilon: float = setting(0.2, doc="passed as clip_epsilon to a loss that takes it (ClipPPOLoss)",
                                      low=0, low_open=True)
    target_ema_decay: float = setting(0.995, doc="SoftUpdate eps: target ← eps·target + (1 - eps)·model",
                                      low=0, high=1, high_open=True)
    updates: LossUpdates = setting(doc="how imagined data feeds the loss", factory=LossUpdates)
    resolved: ResolvedLoss | None = field(default=None, init=False, repr=False, compare=False)
    """what :func:`resolve_loss` made of this config"""

    def __post_init__(self) -> None:
        if isinstance(self.updates, Mapping):
            self.updates = parse(LossUpdates, self.updates, "params.actor_critic.updates")
        self.resolved = resolve_loss(self)  # fails on a bad name, target, kwarg or update value

    @classmethod
    def from_config(cls, node: Mapping) -> ActorCriticLossConfig:
        """From ``params.actor_critic`` (a plain mapping; its other keys, the network's and the
        imagination's, are checked by their own parsers), every value typed and in range; a null
        leaves the default."""
        names = [f.name for f in fields(cls) if f.init]
        return parse(cls, {k: node[k] for k in names if k in node and node[k] is not None}, "params.actor_critic")


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
