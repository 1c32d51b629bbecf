"""Per-component training: the reference's schedule, optimizer groups, non-finite losses skipped."""

import pytest
import torch
import torch.nn as nn
from tensordict import TensorDict

from torchrl_deltairis.modules import Tokenizer, TokenizerConfig
from torchrl_deltairis.optim import decay_groups, make_optimizer
from torchrl_deltairis.trainer import CollectionSchedule, Component, ComponentSchedule, Trainer, train_components


def test_schedule_first_epoch_and_start_after():
    tokenizer = ComponentSchedule(start_after_epochs=0, steps_per_epoch=500, steps_first_epoch=5000)
    assert [tokenizer.steps_at(e) for e in (1, 2, 3)] == [5000, 500, 500]
    atari_wm = ComponentSchedule(start_after_epochs=50, steps_per_epoch=120, steps_first_epoch=120)
    assert [atari_wm.steps_at(e) for e in (1, 50, 51)] == [0, 0, 120]  # the reference's dead first epoch


def test_weight_decay_only_on_linear_weights():
    tokenizer = Tokenizer(TokenizerConfig())
    decay, no_decay = decay_groups(tokenizer)
    linear_weights = {id(m.weight) for m in tokenizer.modules() if isinstance(m, nn.Linear)}
    assert {id(p) for p in decay} == linear_weights and len(decay) == 2  # pre/post quantisation projections
    assert len(decay) + len(no_decay) == len(list(tokenizer.parameters()))
    groups = make_optimizer(tokenizer, lr=1e-4, weight_decay=0.01).param_groups
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0]
    assert isinstance(make_optimizer(tokenizer, lr=1e-4, kind="adam"), torch.optim.Adam)
    with pytest.raises(ValueError, match="valid choices"):
        make_optimizer(tokenizer, lr=1e-4, kind="sgd")


class _QuadraticLoss(nn.Module):
    def __init__(self, module, poison_at=None):
        super().__init__()
        self.module, self.calls, self.poison_at = module, 0, poison_at

    def forward(self, batch):
        self.calls += 1
        loss = ((self.module.weight - batch["target"]) ** 2).sum()
        if self.calls == self.poison_at:
            loss = loss * float("nan")
        return TensorDict(loss_fit=loss, metric_weight=self.module.weight.detach().sum(),
                          ratios=torch.tensor([1.0, 3.0]))  # stock TorchRL losses also log vectors


def _component(poison_at=None, **schedule):
    module = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(module.weight)
    counted = []
    component = Component(
        name="toy", module=module, loss=_QuadraticLoss(module, poison_at),
        optimizer=torch.optim.SGD(module.parameters(), lr=0.1),
        sample=lambda: TensorDict(target=torch.ones(1, 1)), increment_counts=counted.append,
        schedule=ComponentSchedule(**schedule))
    return component, counted


def test_component_trains_counts_from_epoch_two_and_skips_nonfinite():
    component, counted = _component(poison_at=2, steps_per_epoch=3, max_grad_norm=100.0)
    first = train_components([component], epoch=1, device=torch.device("cpu"), progress=False)
    assert counted == []  # no count increments in the first epoch
    assert first["toy/skipped_nonfinite_updates"] == 1.0
    assert torch.isfinite(component.module.weight).all()  # the NaN step never reached the weights
    w_after_two_updates = 1 - 0.8 ** 2  # w <- w - 0.1 * 2 (w - 1), twice
    assert component.module.weight.item() == pytest.approx(w_after_two_updates)
    second = train_components([component], epoch=2, device=torch.device("cpu"), progress=False)
    assert len(counted) == 3 and second["toy/skipped_nonfinite_updates"] == 0.0
    assert 0.1 < second["toy/loss_fit"] < 0.5 and not component.module.training  # losses 0.41, 0.26, 0.17
    assert first["toy/loss_fit"] != first["toy/loss_fit"]  # the NaN is logged, not hidden
    assert second["toy/ratios"] == 2.0  # vector metrics are averaged


def test_component_idle_before_its_start_epoch():
    component, _ = _component(start_after_epochs=2, steps_per_epoch=1)
    assert component.train_epoch(2, torch.device("cpu"), progress=False) == {}
    assert component.loss.calls == 0


def test_trainer_evaluates_at_the_last_epoch_and_finishes_before_the_last_checkpoint():
    events = []

    class Logger:
        def log(self, epoch, metrics):
            events.append(("log", epoch))

    trainer = Trainer(epochs=3, device=torch.device("cpu"), collector=None, policy=None,
                      collection=CollectionSchedule(stop_after_epochs=0), components=[], logger=Logger(),
                      save=lambda epoch: events.append(("save", epoch)),
                      evaluate=lambda epoch: events.append(("evaluate", epoch)) or {"score": 1.0}, eval_every=2,
                      finish=lambda epoch, metrics: events.append(("finish", epoch, metrics["score"])),
                      on_epoch_end=(lambda epoch, metrics: events.append(("media", epoch)),), progress=False)
    trainer.run()
    assert events == [("media", 1), ("log", 1), ("save", 1),
                      ("evaluate", 2), ("media", 2), ("log", 2), ("save", 2),
                      ("evaluate", 3), ("media", 3), ("log", 3), ("finish", 3, 1.0), ("save", 3)]
    events.clear()
    Trainer(epochs=3, device=torch.device("cpu"), collector=None, policy=None, collection=CollectionSchedule(),
            components=[], logger=Logger(), save=lambda epoch: events.append(("save", epoch)), start_epoch=4,
            progress=False).run()
    assert events == []  # a resumed finished run does nothing
