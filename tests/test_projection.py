"""The run's own projection (torchrl_deltairis/projection.py): the schedule times the measured costs,
costs taken from steady epochs, a line once the pieces run so far are measured and again when all are."""

import pytest

from torchrl_deltairis.projection import Costs, RunClock, RunSchedule, duration, project
from torchrl_deltairis.trainer import CollectionSchedule, ComponentSchedule


def _schedule(eval_every=3):
    # collection stops after epoch 4; the actor-critic starts after epoch 2; 6 epochs
    return RunSchedule(6, CollectionSchedule(num_steps=10, num_steps_first_epoch=100, stop_after_epochs=4),
                       {"tokenizer": ComponentSchedule(steps_per_epoch=2, steps_first_epoch=5),
                        "world_model": ComponentSchedule(steps_per_epoch=3),
                        "actor_critic": ComponentSchedule(start_after_epochs=2, steps_per_epoch=4)}, eval_every)


def test_project_follows_the_schedule():
    rows = project(_schedule(), Costs(0.5, {"tokenizer": 1.0, "world_model": 2.0, "actor_critic": 3.0}, 7.0))
    assert [r["collection"] for r in rows] == [50, 5, 5, 5, 0, 0]
    assert [r["tokenizer"] for r in rows] == [5, 2, 2, 2, 2, 2]
    assert [r["actor_critic"] for r in rows] == [0, 0, 12, 12, 12, 12]
    assert [r["evaluation"] for r in rows] == [0, 0, 7, 0, 0, 7]  # every 3 epochs and at the last


def _metrics(schedule, epoch, collection=0.5, update=1.0, evaluation=None):
    m = {}
    steps = schedule.collection.steps_at(epoch)
    if steps:
        m["collection/train/steps_per_second"] = 1 / collection
    for name, c in schedule.components.items():
        if c.steps_at(epoch):
            m[f"{name}/seconds"] = update * c.steps_at(epoch)
    if evaluation is not None:
        m["evaluation/seconds"] = evaluation
    return m


def test_the_clock_takes_steady_costs_and_speaks_when_the_pieces_are_measured():
    schedule = _schedule()
    clock = RunClock(schedule)
    assert clock.observe(1, _metrics(schedule, 1, collection=5.0, update=9.0)) is None  # epoch 1: warm-up
    line = clock.observe(2, _metrics(schedule, 2))
    assert line.startswith("projected on this machine: the whole run ~")
    assert line.endswith("(not counting the actor_critic, evaluation: not measured yet)")
    assert clock.costs.collection_step == 0.5 and clock.costs.updates["tokenizer"] == 1.0  # epoch 2 replaced 1
    assert "+ actor_critic, evaluation (unmeasured)" in clock.postfix(2)
    line = clock.observe(3, _metrics(schedule, 3, collection=0.7, update=1.5, evaluation=7.0))
    assert "not counting" not in line
    assert clock.costs.collection_step == 0.5 and clock.costs.updates["tokenizer"] == 1.0  # kept
    assert clock.costs.updates["actor_critic"] == 1.5 and clock.costs.evaluation == 7.0
    assert clock.observe(4, _metrics(schedule, 4)) is None  # said once
    total = sum(sum(r.values()) for r in project(schedule, clock.costs))
    assert clock.total() == pytest.approx(total)
    assert clock.left(6) == 0 and clock.left(3) == pytest.approx(sum(sum(r.values()) for r in project(
        schedule, clock.costs)[3:]))


def test_duration_reads_naturally():
    assert (duration(42), duration(750), duration(3 * 3600), duration(80 * 3600)) == \
        ("42 s", "12.5 min", "3.0 h", "80 h (3.3 days)")
