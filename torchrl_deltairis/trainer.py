"""The Δ-IRIS epoch loop: collect → train each component in turn → checkpoint → log (as the reference's ``src/trainer.py``).

Everything is built elsewhere (``build/``) and handed in; this file only loops. A ``Component``
is one trained network with its loss (a TorchRL ``LossModule`` taking a segment batch), optimizer,
segment buffer and schedule; the tokenizer, the world model and the actor-critic are three of them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from tensordict import TensorDictBase
from tqdm.auto import tqdm

from torchrl_deltairis.data.transfer import to_device
from torchrl_deltairis.optim import apply_gradients
from torchrl_deltairis.projection import RunClock, RunSchedule

_log = logging.getLogger(__name__)


@dataclass
class ComponentSchedule:
    """When and how much a component trains (the reference's ``params.training.<component>``)."""

    start_after_epochs: int = 0  # trains from epoch start_after_epochs + 1 on
    steps_per_epoch: int = 500
    steps_first_epoch: int | None = None  # replaces steps_per_epoch at epoch 1 only
    grad_acc_steps: int = 1
    max_grad_norm: float = 10.0

    def steps_at(self, epoch: int) -> int:
        if epoch <= self.start_after_epochs:
            return 0
        if epoch == 1 and self.steps_first_epoch is not None:
            return self.steps_first_epoch
        return self.steps_per_epoch


@dataclass
class Component:
    """One trained network: ``loss(batch)`` returns weighted ``loss_*`` terms (summed here) and metrics."""

    name: str
    module: nn.Module  # what the optimizer trains (put in train mode while training, eval after)
    loss: nn.Module
    optimizer: torch.optim.Optimizer
    sample: Callable[[], TensorDictBase]  # a segment batch [B, L], on the CPU (or already on the device)
    increment_counts: Callable[[TensorDictBase], object]  # the sampler's per-episode visit counts, on the CPU
    schedule: ComponentSchedule
    bf16: bool = False  # bf16 autocast (tokenizer and world model, as the reference)
    after_update: Callable[[], None] | None = None  # e.g. the actor-critic's target EMA update
    prepare: Callable[[TensorDictBase], TensorDictBase] | None = None  # segments -> loss input (imagination)
    # loss input -> the inputs of successive optimiser steps (PPO's epochs of minibatches, replay samples);
    # with it, each sample gives len(updates(...)) steps and grad_acc_steps must be 1
    updates: Callable[[TensorDictBase], Iterable[TensorDictBase]] | None = None
    skipped_updates: int = field(default=0, init=False)

    def autocast(self, device: torch.device):
        return torch.autocast(device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()

    def __post_init__(self) -> None:
        if self.updates is not None and self.schedule.grad_acc_steps != 1:
            raise ValueError(f"params.training.{self.name}.grad_acc_steps={self.schedule.grad_acc_steps} with "
                             "several updates per imagined batch; expected 1")

    def _backward(self, loss_input: TensorDictBase, device: torch.device, sums: dict, scale: int) -> None:
        with self.autocast(device):
            out = self.loss(loss_input)
            total = sum(v for k, v in out.items() if k.startswith("loss_"))
        (total / scale).backward()
        for key, value in out.items():
            sums[key] = sums.get(key, 0.0) + value.detach().float().mean()  # stock losses log vectors too

    def _apply(self) -> None:
        if apply_gradients(self.optimizer, self.parameters(), self.schedule.max_grad_norm):
            if self.after_update is not None:
                self.after_update()
        else:
            self.skipped_updates += 1

    def parameters(self) -> list[nn.Parameter]:
        """What the optimizer steps (the module's, plus a loss's own such as a Q head)."""
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def _sample(self, epoch: int, device: torch.device) -> TensorDictBase:
        """A batch on ``device``; its episodes are counted first, on the CPU where the counts live (as
        the reference, counts only move from the second epoch on)."""
        batch = self.sample()
        if epoch > 1:
            self.increment_counts(batch)
        return to_device(batch, device)

    def train_epoch(self, epoch: int, device: torch.device, progress: bool = True) -> dict[str, float]:
        """Runs this epoch's updates; returns the mean of every loss term and metric, ``<name>/...``."""
        steps = self.schedule.steps_at(epoch)
        if steps == 0:
            return {}
        self.module.train()
        self.loss.train()
        sums: dict[str, torch.Tensor] = {}
        start, skipped_before = time.perf_counter(), self.skipped_updates
        n = 0
        for _ in tqdm(range(steps), desc=f"epoch {epoch} {self.name}", disable=not progress, leave=False):
            if self.updates is not None:
                batch = self._sample(epoch, device)
                loss_input = self.prepare(batch) if self.prepare is not None else batch
                for piece in self.updates(loss_input):
                    self._backward(piece, device, sums, 1)
                    self._apply()
                    n += 1
                continue
            for _ in range(self.schedule.grad_acc_steps):
                batch = self._sample(epoch, device)
                loss_input = self.prepare(batch) if self.prepare is not None else batch
                self._backward(loss_input, device, sums, self.schedule.grad_acc_steps)
                n += 1
            self._apply()
        self.module.eval()
        self.loss.eval()
        metrics = {f"{self.name}/{k}": float(v) / max(n, 1) for k, v in sums.items()}
        metrics[f"{self.name}/skipped_nonfinite_updates"] = float(self.skipped_updates - skipped_before)
        metrics[f"{self.name}/seconds"] = time.perf_counter() - start
        return metrics


def train_components(components: Sequence[Component], epoch: int, device: torch.device,
                     progress: bool = True) -> dict[str, float]:
    """The tokenizer, then the world model, then the actor-critic, each on its own schedule."""
    metrics: dict[str, float] = {}
    for component in components:
        metrics.update(component.train_epoch(epoch, device, progress))
    return metrics


@dataclass
class CollectionSchedule:
    """Real-environment collection per epoch (the reference's ``params.collection.train``)."""

    num_steps: int = 10_000
    num_steps_first_epoch: int = 100_000  # epoch 1 runs a uniform random policy
    stop_after_epochs: int = 991  # later epochs train on the data collected so far
    epsilon: float = 0.01  # from epoch 2 on

    def steps_at(self, epoch: int) -> int:
        if epoch > self.stop_after_epochs:
            return 0
        return self.num_steps_first_epoch if epoch == 1 else self.num_steps


@dataclass
class Trainer:
    """collect → train components → evaluate (every ``eval_every`` epochs and at the last) → log →
    checkpoint.

    ``save(epoch)`` writes the checkpoint; ``evaluate(epoch)`` returns test metrics; ``logger`` has
    ``log(epoch, metrics)``; ``finish(epoch, metrics)`` runs once the last epoch is logged, before its
    checkpoint (so a kill in between redoes the epoch rather than skipping ``finish``). ``policy`` is
    the collector's ``ExplorationPolicy`` (its epsilon is set per epoch: 1 in the first, the
    schedule's afterwards). Logging comes before the checkpoint: a resumed run drops the rows of
    epochs after its checkpoint, so every row of ``metrics.csv`` belongs to a saved epoch.
    """

    epochs: int
    device: torch.device
    collector: object
    policy: object
    collection: CollectionSchedule
    components: Sequence[Component]
    logger: object
    save: Callable[[int], None]
    evaluate: Callable[[int], dict[str, float]] | None = None
    eval_every: int = 50
    start_epoch: int = 1
    progress: bool = True
    on_close: Sequence[Callable[[], None]] = ()  # collectors' shutdown, the logger's close
    finish: Callable[[int, dict[str, float]], None] | None = None  # e.g. writes results.json
    on_epoch_end: Sequence[Callable[[int, dict[str, float]], None]] = ()  # e.g. saves media
    save_initial: bool = False  # a new run checkpoints its start as epoch 0: a kill in epoch 1 resumes

    current_epoch: int = field(default=0, init=False)  # the epoch running now (for messages)

    def run_epoch(self, epoch: int) -> dict[str, float]:
        self.current_epoch = epoch
        start = time.perf_counter()
        metrics: dict[str, float] = {}
        steps = self.collection.steps_at(epoch)
        if steps:
            self.policy.epsilon = 1.0 if epoch == 1 else self.collection.epsilon
            stats = self.collector.collect(steps, desc=f"epoch {epoch} collection")
            metrics.update(stats.summary("collection/train/"))
            metrics["collection/train/steps_per_second"] = stats.num_steps / max(time.perf_counter() - start, 1e-9)
        metrics.update(train_components(self.components, epoch, self.device, self.progress))
        if self.evaluate is not None and (epoch % self.eval_every == 0 or epoch == self.epochs):
            evaluation_start = time.perf_counter()
            metrics.update(self.evaluate(epoch))
            metrics["evaluation/seconds"] = time.perf_counter() - evaluation_start
        for hook in self.on_epoch_end:
            hook(epoch, metrics)
        metrics["epoch_seconds"] = time.perf_counter() - start
        self.logger.log(epoch, metrics)
        if epoch == self.epochs and self.finish is not None:
            self.finish(epoch, metrics)
        self.save(epoch)
        return metrics

    def run(self) -> None:
        self.current_epoch = self.start_epoch
        if self.save_initial and self.start_epoch == 1:
            self.save(0)
            self.save_initial = False
        clock = RunClock(RunSchedule(self.epochs, self.collection, {c.name: c.schedule for c in self.components},
                                     self.eval_every if self.evaluate is not None else None))
        # a context manager: an interruption closes the bar, so what is printed next starts a line
        with tqdm(range(self.start_epoch, self.epochs + 1), desc="epochs", initial=self.start_epoch - 1,
                  total=self.epochs, disable=not self.progress) as epochs:
            for epoch in epochs:
                line = clock.observe(epoch, self.run_epoch(epoch))
                if line is not None:
                    epochs.clear()
                    _log.info(line)
                    epochs.refresh()
                if epoch > 1 or self.start_epoch > 1:
                    epochs.set_postfix_str(clock.postfix(epoch), refresh=False)

    def close(self) -> None:
        """Runs the closers once (a second call does nothing)."""
        closers, self.on_close = self.on_close, ()
        for close in closers:
            close()
