"""The trained components of a run: each network with its loss, optimizer, segment source and schedule
(the tokenizer, the world model, and the actor-critic trained in imagination through the loss slot).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase

from torchrl_deltairis import functional, keys
from torchrl_deltairis.config import ComponentTraining, RunConfig
from torchrl_deltairis.data import (
    COMPONENTS,
    EpisodeCounts,
    EpisodeStore,
    SegmentSampler,
    make_segment_buffer,
)
from torchrl_deltairis.data.transfer import to_device
from torchrl_deltairis.envs.imagination import ImaginationEnv, imagine
from torchrl_deltairis.objectives import TokenizerLoss, WorldModelLoss
from torchrl_deltairis.objectives.loss_assembly import (
    MaskedLoss,
    build_actor_critic_loss,
    make_target_updater,
    minibatches,
    uses_value_estimator,
)
from torchrl_deltairis.optim import make_optimizer
from torchrl_deltairis.policy import ActorCriticTrunk, burn_in, make_actor, recurrent_state_spec
from torchrl_deltairis.reference import DeltaIrisModels
from torchrl_deltairis.trainer import Component, ComponentSchedule


Generators = dict[str, torch.Generator]  # a run's named generators, saved in and restored from its checkpoints


def schedule_of(t: ComponentTraining) -> ComponentSchedule:
    """When and how much a component trains (``params.training.<name>``)."""
    return ComponentSchedule(start_after_epochs=t.start_after_epochs, steps_per_epoch=t.steps_per_epoch,
                             steps_first_epoch=t.steps_first_epoch, grad_acc_steps=t.grad_acc_steps,
                             max_grad_norm=t.max_grad_norm)


def make_segment_source(run: RunConfig, name: str, store: EpisodeStore, counts: EpisodeCounts,
                        device: torch.device, seed: int, generators: Generators | None = None,
                        ) -> tuple[Callable[[], TensorDictBase], Callable]:
    """``params.training.<name>``'s segments (length, batch, priority): ``(sample, increment_counts)``,
    ``sample()`` giving a batch [B, L] on the CPU (the trainer counts its episodes there, then moves it
    to ``device`` with :func:`~torchrl_deltairis.data.transfer.to_device`). The sampler's generator is registered in
    ``generators`` as ``<name>/segments`` (the checkpoint saves it: a resumed run draws the batches
    the unkilled one would)."""
    if name not in COMPONENTS:
        raise ValueError(f"unknown component {name!r}; valid: {list(COMPONENTS)}")
    t = run.training.component(name)
    sampler = SegmentSampler(store, counts, name, t.sequence_length, can_sample_beyond_end=name != "actor_critic",
                             alpha=t.priority_alpha, seed=seed + COMPONENTS.index(name))
    if generators is not None:
        generators[f"{name}/segments"] = sampler.generator
    buffer = make_segment_buffer(store, sampler, t.batch_num_samples)
    return buffer.sample, sampler.increment_counts


def make_component(run: RunConfig, name: str, module: torch.nn.Module, loss: torch.nn.Module,
                   store: EpisodeStore, counts: EpisodeCounts, device: torch.device, seed: int, *,
                   trained: torch.nn.Module | None = None, source=None, generators: Generators | None = None,
                   **kwargs) -> Component:
    """A component sampling its own segments (``params.training.<name>``); the optimizer steps
    ``trained`` (default: ``module``), e.g. the network plus a loss's own head."""
    sample, increment_counts = source or make_segment_source(run, name, store, counts, device, seed, generators)
    t = run.training.component(name)
    kind = "adam" if name == "actor_critic" else "adamw"
    optimizer = make_optimizer(trained if trained is not None else module, lr=run.training.learning_rate_of(name),
                               weight_decay=t.weight_decay, kind=kind)
    return Component(name=name, module=module, loss=loss, optimizer=optimizer, sample=sample,
                     increment_counts=increment_counts, schedule=schedule_of(t), **kwargs)


def context_of(segments: TensorDictBase) -> TensorDict:
    """Actor-critic segments [B, burn_in + 1] → the imagination context (all frames, actions but the last)."""
    return TensorDict({keys.PIXELS: segments.get(keys.PIXELS), keys.ACTION: segments.get(keys.ACTION)[:, :-1]},
                      batch_size=segments.batch_size[:1])


@dataclass
class ActorCriticParts:
    """What the actor-critic's building gives the rest of the run."""

    component: Component
    trunk: ActorCriticTrunk  # the policy network on TensorDicts (real collection)
    imagine_segments: Callable[[TensorDictBase], TensorDictBase]  # segments [B, burn_in + 1] -> imagined [B, H]
    loss: torch.nn.Module  # the configured LossModule (its state goes into the checkpoint)
    env: ImaginationEnv  # the world model as a TorchRL env: imagine_segments', the on-policy loss's (off-policy: a fixed-batch twin)


def make_actor_critic_component(run: RunConfig, models: DeltaIrisModels, store: EpisodeStore,
                                counts: EpisodeCounts, device: torch.device, seed: int, *,
                                trunk: ActorCriticTrunk | None = None,
                                generators: Generators | None = None) -> ActorCriticParts:
    """Imagination from real segments, then the configured loss (``params.actor_critic.loss`` and
    ``updates``, the contract of ``objectives/loss_slot.py``): on-policy, each imagined batch
    feeds ``epochs`` passes of row minibatches; off-policy, a stock ``Collector`` on the imagination
    env fills a stock replay buffer that the loss samples from. ``trunk``: the acting policy network
    (the one the real collectors use), built here when not given. ``generators``: where the run
    registers the component's generators (checkpointed), as ``make_segment_source``."""
    generators = {} if generators is None else generators
    loss_cfg = run.actor_critic_loss
    resolved = loss_cfg.resolved
    actor_critic = models.actor_critic
    state_spec = recurrent_state_spec(actor_critic.config.lstm_dim, device=device)
    trunk = trunk if trunk is not None else ActorCriticTrunk(actor_critic.model, write_values=False)
    actor = make_actor(trunk)
    loss = build_actor_critic_loss(actor_critic, loss_cfg)  # its own networks on the models' device
    targets = make_target_updater(loss, loss_cfg.target_ema_decay)
    own = [p for p in loss.parameters() if p.requires_grad
           and all(p is not q for q in actor_critic.model.parameters())]
    trained = torch.nn.ModuleList([actor_critic.model, loss]) if own else None
    horizon = run.imagination.imagination_horizon
    autocast_dtype = torch.bfloat16 if run.training.imagination_bf16 else None
    env = ImaginationEnv(models.tokenizer, models.world_model, sample=True, policy_state_spec=state_spec,
                         autocast_dtype=autocast_dtype, compile_step=run.common.compile)
    with_target = resolved.name in (None, "reinforce")

    def imagine_segments(segments: TensorDictBase) -> TensorDictBase:
        return imagine(env, actor, actor_critic, context_of(segments), horizon, with_target=with_target)

    common = dict(trained=trained, after_update=targets.step if targets is not None else None, loss=MaskedLoss(loss))
    generator = generators["actor_critic/minibatches"] = torch.Generator().manual_seed(seed + 100)
    if resolved.mode == "on_policy":
        estimator = loss.value_estimator if uses_value_estimator(loss, resolved) else None

        def prepare(segments: TensorDictBase) -> TensorDictBase:
            data = imagine_segments(segments)
            if estimator is not None:
                with torch.no_grad():  # advantages once per imagined batch, from the critic before the updates
                    data = estimator(data)
            return data

        several = (resolved.epochs, resolved.num_minibatches) != (1, 1)  # else: one update per batch, grad_acc
        updates = (lambda data: minibatches(data, resolved.epochs, resolved.num_minibatches, generator)) \
            if several else None
        component = make_component(run, "actor_critic", actor_critic.model, store=store, counts=counts,
                                   device=device, seed=seed, prepare=prepare, updates=updates,
                                   generators=generators, **common)
    else:
        component = _off_policy_component(run, models, store, counts, device, seed, actor, state_spec, resolved,
                                          common, generators)
    return ActorCriticParts(component, trunk, imagine_segments, loss, env)


def _off_policy_component(run, models, store, counts, device, seed, actor, state_spec, resolved, common,
                          generators):
    """A stock ``Collector`` on an ``ImaginationEnv`` of fixed batch, reset at every batch from real
    segments (``context_fn``, with the burned-in policy state), into a stock replay buffer."""
    from torchrl.collectors import Collector
    from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer

    sample_segments, increment_counts = make_segment_source(run, "actor_critic", store, counts, device, seed,
                                                            generators)
    net = models.actor_critic.model
    rows, horizon = run.training.actor_critic.batch_num_samples, run.imagination.imagination_horizon

    def context_fn() -> TensorDict:
        segments = sample_segments()
        increment_counts(segments)  # the Collector, not the trainer, draws these segments (on the CPU)
        context = context_of(to_device(segments, device))
        h, c = burn_in(net, context.get(keys.PIXELS)[:, :-1])
        return context.update({keys.RECURRENT_STATE_H: h, keys.RECURRENT_STATE_C: c})

    autocast_dtype = torch.bfloat16 if run.training.imagination_bf16 else None
    env = ImaginationEnv(models.tokenizer, models.world_model, sample=True, policy_state_spec=state_spec,
                         batch_size=[rows], context_fn=context_fn, autocast_dtype=autocast_dtype,
                         compile_step=run.common.compile)
    env.set_seed(seed + 200)
    generators["actor_critic/imagination"] = env.core.generator
    updates_cfg = run.actor_critic_loss.updates
    buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(updates_cfg.replay_capacity, device=device),
                                    batch_size=updates_cfg.replay_batch_size)
    collector: list = []  # built at the first update: its construction resets the env, which needs data

    def sample() -> TensorDictBase:
        if not collector:
            collector.append(iter(Collector(env, actor, frames_per_batch=rows * horizon, total_frames=-1,
                                            reset_at_each_iter=True, device=device, trust_policy=True,
                                            auto_register_policy_transforms=False)))
        return next(collector[0])

    def updates(batch: TensorDictBase):
        mask = functional.mask_after_first_done(ends=batch.get(keys.NEXT_TERMINATED)[..., 0])
        buffer.extend(batch[mask].exclude("collector"))
        return (buffer.sample() for _ in range(resolved.num_minibatches))

    return make_component(run, "actor_critic", net, store=store, counts=counts, device=device, seed=seed,
                          source=(sample, lambda _: None), updates=updates, **common)


def make_model_components(run: RunConfig, models: DeltaIrisModels, store: EpisodeStore, counts: EpisodeCounts,
                          device: torch.device, seed: int, generators: Generators | None = None) -> list[Component]:
    """The tokenizer's and the world model's components (bf16 autocast, as the reference trains them);
    their samplers' generators go into ``generators`` (``make_segment_source``)."""
    bf16 = run.training.bf16
    tokenizer_loss = TokenizerLoss(models.tokenizer, models.configs.tokenizer_loss)
    world_model_loss = WorldModelLoss(models.world_model, models.tokenizer, models.configs.world_model_loss)
    return [make_component(run, "tokenizer", models.tokenizer, tokenizer_loss, store, counts, device, seed,
                           bf16=bf16, generators=generators),
            make_component(run, "world_model", models.world_model, world_model_loss, store, counts, device, seed,
                           bf16=bf16, generators=generators)]
