"""Real-environment collection: a TorchRL ``Collector`` writing into the episode store.

``ExplorationPolicy`` turns any TorchRL policy that writes action ``"logits"`` into the reference's
behaviour policy: sample at a temperature (or take the argmax), then TorchRL's ``EGreedyModule``
replaces the action by a uniform random one with probability epsilon, *independently for each
environment* (the reference draws one coin for the whole vector of envs; we fix that,
docs/departures.md#bugs-fixed). With ``epsilon = 1`` (the first epoch) the wrapped policy is not called.

``EpisodeCollector`` runs a stock ``torchrl.collectors.Collector`` over a batched env, appends every
batch to the store (the store tracks each env's ongoing episode), and reports finished episodes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.collectors import Collector
from torchrl.data import Categorical, Composite
from torchrl.envs import EnvBase, ExplorationType, exploration_type
from torchrl.modules import EGreedyModule
from tqdm.auto import tqdm

from torchrl_deltairis import keys
from torchrl_deltairis.compat import collector_policy_keys_as_list, collector_write_next_step
from torchrl_deltairis.envs.crafter import crafter_metrics


class ExplorationPolicy(TensorDictModuleBase):
    """Categorical sampling with temperature, then TorchRL's ``EGreedyModule`` (per-env epsilon).

    Args:
        num_actions: size of the discrete action space.
        policy: a TensorDict module writing ``logits_key`` ([*batch, num_actions]); ``None`` means a
            uniform random policy.
        epsilon: probability, drawn per environment and per step, of a uniform random action (the
            ``eps`` buffer of the ``EGreedyModule``; constant, no annealing: the reference's schedule
            is 1 in the first epoch, ``epsilon`` afterwards, set with :attr:`epsilon`).
        temperature: logits are divided by it before sampling (ignored when not sampling).
        should_sample: sample from the logits (the reference's default), else take the argmax. Under
            ``ExplorationType.MODE``/``DETERMINISTIC`` the argmax is taken and epsilon is ignored
            (``EGreedyModule`` acts under ``RANDOM`` only).
        device: where the policy runs (the ``eps`` buffer lives there).
    """

    def __init__(self, num_actions: int, policy: TensorDictModuleBase | None = None, *, epsilon: float = 0.01,
                 temperature: float = 1.0, should_sample: bool = True, logits_key: str = "logits",
                 action_key: str = keys.ACTION, device: str | torch.device | None = None):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.num_actions = num_actions
        self.temperature, self.should_sample = temperature, should_sample
        self.logits_key, self.action_key = logits_key, action_key
        self.egreedy = EGreedyModule(Categorical(num_actions, shape=(), dtype=torch.int64), eps_init=1.0,
                                     eps_end=0.0, annealing_num_steps=1, action_key=action_key, device=device)
        self.epsilon = epsilon
        self.policy = policy
        self.in_keys = list(policy.in_keys) if policy is not None else [keys.PIXELS]
        self.out_keys = list(dict.fromkeys([*(policy.out_keys if policy is not None else []), action_key]))

    @property
    def epsilon(self) -> float:
        return float(self.egreedy.eps)

    @epsilon.setter
    def epsilon(self, value: float) -> None:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"epsilon must lie in [0, 1], got {value}")
        self.egreedy.eps.fill_(value)
        self._uniform = value >= 1.0  # host-side copy: the per-step check needs no device sync

    @property
    def spec(self) -> Composite:
        """Unbatched specs of every output: the action and the wrapped policy's own (when it has a
        ``spec``). A TorchRL ``Collector`` reads them instead of probing the policy, which, at epsilon 1,
        would never call the wrapped network and so would miss its outputs (the LSTM state among them)."""
        out = Composite({self.action_key: Categorical(self.num_actions, shape=(), dtype=torch.int64)})
        inner = getattr(self.policy, "spec", None)
        if isinstance(inner, Composite):
            out.update(inner)
        return out

    def forward(self, td: TensorDictBase) -> TensorDictBase:
        greedy = exploration_type() in (ExplorationType.MODE, ExplorationType.DETERMINISTIC)
        if self.policy is None or (self._uniform and not greedy):  # uniform: the network is not called at all
            return td.set(self.action_key, self.egreedy.spec[self.action_key].rand(td.batch_size).to(td.device))
        td = self.policy(td)
        logits = td.get(self.logits_key)
        if logits.shape[-1] != self.num_actions:
            raise ValueError(f"policy logits have {logits.shape[-1]} actions, expected {self.num_actions}")
        if greedy or not self.should_sample:
            action = logits.argmax(-1)
        else:
            action = torch.distributions.Categorical(logits=logits / self.temperature).sample()
        return self.egreedy(td.set(self.action_key, action))


@dataclass
class CollectionStats:
    """What one ``collect`` call did: steps added and the episodes that finished during it."""

    num_steps: int = 0
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    achievements: list[torch.Tensor] = field(default_factory=list)  # Crafter: bool [22] per episode

    def summary(self, prefix: str = "") -> dict[str, float]:
        out: dict[str, float] = {f"{prefix}steps": float(self.num_steps), f"{prefix}episodes": float(len(self.returns))}
        if self.returns:
            out[f"{prefix}return_mean"] = float(torch.tensor(self.returns).mean())
            out[f"{prefix}length_mean"] = float(torch.tensor(self.lengths, dtype=torch.float).mean())
        if self.achievements:  # Crafter: success rates (%) of this call's finished episodes, and the score
            out.update(crafter_metrics(torch.stack(self.achievements), prefix))
        return out


class EpisodeCollector:
    """Collects real steps with a TorchRL ``Collector`` and appends them to an episode store.

    Devices: the envs step on ``env.device`` (the CPU), the policy runs on ``policy_device`` (the
    models' device) and batches are stored from ``storing_device`` (the CPU). The stock collector
    does every transfer between the three (its ``env_device``, ``policy_device`` and
    ``storing_device``); the burn-in state is computed on the network's device and written into the
    collector's current step on the env's device, where the collector keeps it between steps.

    Args:
        env: a batched env (batch size ``[num_envs]``), e.g. from ``make_batched_env``. A recurrent
            policy's state keys must be in its specs (append the trunk's ``make_tensordict_primer()``).
        policy: the behaviour policy (usually an ``ExplorationPolicy``); its epsilon may change between
            calls, since the collector runs it in this process.
        store: anything with ``add_batch(td, keep=None)`` taking ``[num_envs, T]`` batches (the
            episode store).
        steps_per_batch: steps per env in one collector batch; a batch holds ``num_envs`` times that.
        policy_device: where the policy runs (None: the env's device).
        before_collect: called as ``before_collect(num_envs, frame_shape)`` at the start of every
            ``collect`` and ``collect_episodes``; a TensorDict ``[num_envs]`` it returns is written into
            the step about to be taken (e.g. :class:`torchrl_deltairis.policy.CollectBurnIn`'s state).
    """

    def __init__(self, env: EnvBase, policy: Callable, store, *, steps_per_batch: int = 64,
                 policy_device: str | torch.device | None = None, storing_device: str | torch.device = "cpu",
                 progress: bool = True,
                 before_collect: Callable[[int, tuple[int, ...]], TensorDictBase | None] | None = None):
        if len(env.batch_size) != 1:
            raise ValueError(f"expected a batched env with batch size [num_envs], got {tuple(env.batch_size)}")
        self.env, self.policy, self.store, self.progress = env, policy, store, progress
        self.before_collect = before_collect
        self.num_envs = env.batch_size[0]
        self.frames_per_batch = self.num_envs * steps_per_batch
        env_device = env.device if env.device is not None else torch.device("cpu")
        self.collector = Collector(env, policy, frames_per_batch=self.frames_per_batch, total_frames=-1,
                                   env_device=env_device,
                                   policy_device=policy_device if policy_device is not None else env_device,
                                   storing_device=storing_device, trust_policy=True,
                                   auto_register_policy_transforms=False)
        collector_policy_keys_as_list(self.collector)  # a GPU run's steps fail without it (compat.py)
        self._iterator: Iterator[TensorDictBase] | None = None
        self.excess_steps = 0  # steps collected beyond the last request, counted towards the next one
        self.resumed_steps = 0  # steps a killed run stored in the epoch it resumes: the next collect counts them

    def _start(self) -> None:
        """Runs ``before_collect`` and writes what it returns into the collector's current step."""
        if self._iterator is None:
            self._iterator = iter(self.collector)
        if self.before_collect is None:
            return
        frame_shape = tuple(self.env.observation_spec[keys.PIXELS].shape[-3:])
        values = self.before_collect(self.num_envs, frame_shape)
        if values is not None:
            collector_write_next_step(self.collector, values)

    def collect(self, num_steps: int, desc: str = "collect") -> CollectionStats:
        """Collects at least ``num_steps - excess`` steps (whole batches), stores them, and returns
        the statistics; the overshoot is carried over to the next call, as the reference does."""
        stats = CollectionStats(num_steps=self.resumed_steps)
        self.resumed_steps = 0
        self._start()
        target = max(num_steps - self.excess_steps, 0)
        with tqdm(total=target, initial=min(stats.num_steps, target), desc=desc, unit="step",
                  disable=not self.progress, leave=False) as bar:
            while stats.num_steps < target:
                batch = next(self._iterator)
                self.store.add_batch(batch)
                self._record_episodes(batch, stats)
                stats.num_steps += batch.numel()
                bar.update(batch.numel())
        self.excess_steps = stats.num_steps - target
        return stats

    @staticmethod
    def episode_quotas(num_episodes: int, num_envs: int) -> torch.Tensor:
        """How many episodes each env plays in ``collect_episodes``: ``num_episodes`` split as evenly
        as possible, fixed before any episode is played."""
        if num_episodes < 1:
            raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
        return torch.full((num_envs,), num_episodes // num_envs) + (torch.arange(num_envs) < num_episodes % num_envs)

    def collect_episodes(self, num_episodes: int, desc: str = "test episodes") -> CollectionStats:
        """Fresh episodes on every env (the collector is reset, the store's running episodes are
        ended, ``before_collect`` runs, as the reference burns the LSTM in on zero frames before its
        test episodes), until each env has played its quota (:meth:`episode_quotas`).

        Unbiased: every env plays a number of episodes fixed in advance, whatever their lengths, so
        long episodes count as much as short ones (keeping the first ``num_episodes`` to finish would
        favour short ones). The steps an env takes after its quota are neither stored nor counted."""
        quotas = self.episode_quotas(num_episodes, self.num_envs)
        self.collector.reset()
        self.store.end_open_episodes()
        self.excess_steps = 0
        self._start()
        stats = CollectionStats()
        finished = torch.zeros(self.num_envs, dtype=torch.long)
        with tqdm(total=num_episodes, desc=desc, unit="episode", disable=not self.progress, leave=False) as bar:
            while bool((finished < quotas).any()):
                batch = next(self._iterator)
                done = batch.get(keys.NEXT_DONE).squeeze(-1).cpu()  # [num_envs, T]
                # a step counts while its env has not finished its quota before it
                ended_before = finished[:, None] + done.long().cumsum(1) - done.long()
                keep = ended_before < quotas[:, None]
                self.store.add_batch(batch, keep=keep)
                before = len(stats.returns)
                self._record_episodes(batch, stats, keep)
                stats.num_steps += int(keep.sum())
                finished += (done & keep).sum(1)
                bar.update(len(stats.returns) - before)
        return stats

    @staticmethod
    def _record_episodes(batch: TensorDictBase, stats: CollectionStats, keep: torch.Tensor | None = None) -> None:
        nxt = batch.get("next")
        done = nxt.get(keys.DONE).squeeze(-1)
        if keep is not None:
            done = done & keep.to(done.device)
        if not done.any():
            return
        stats.returns.extend(nxt.get("episode_reward")[done].squeeze(-1).tolist())
        stats.lengths.extend(nxt.get("step_count")[done].squeeze(-1).tolist())
        if keys.ACHIEVEMENTS in nxt.keys():
            stats.achievements.extend(nxt.get(keys.ACHIEVEMENTS)[done].unbind(0))

    def shutdown(self) -> None:
        self.collector.shutdown()
