"""How long a run takes: its schedule times the measured cost of each piece.

A run's epochs differ (epoch 1 collects with a random policy and has its own update budgets;
components start after ``start_after_epochs``; collection stops after ``stop_after_epochs``; test
episodes run every ``eval_every`` epochs and at the last), but each piece costs about the same each
time: seconds per real env step, per update of each component, per evaluation. :func:`project` turns
those into seconds per part for every epoch. ``benchmarks/runtime.py`` measures the costs before a run;
:class:`RunClock` measures them during one (from the trainer's epoch metrics) and says how long the
whole run will take on this machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from torchrl_deltairis.data.counts import COMPONENTS

if TYPE_CHECKING:  # the trainer builds a RunClock: no import at run time
    from torchrl_deltairis.trainer import CollectionSchedule, ComponentSchedule

__all__ = ["PARTS", "COMPONENTS", "Costs", "RunSchedule", "RunClock", "project", "duration"]

PARTS = ("collection", *COMPONENTS, "evaluation")


@dataclass
class Costs:
    """Seconds per real env step (all envs together), per update of each component (an optimizer step,
    gradient accumulation included), per evaluation; a missing entry has not been measured yet."""

    collection_step: float | None = None
    updates: dict[str, float] = field(default_factory=dict)
    evaluation: float | None = None

    def missing(self, schedule: RunSchedule) -> list[str]:
        """The parts that the schedule runs but whose cost is unknown."""
        needed = {"collection": schedule.collection.steps_at(1) + schedule.collection.steps_at(2) > 0,
                  "evaluation": schedule.eval_every is not None,
                  **{name: name in schedule.components for name in COMPONENTS}}
        known = {"collection": self.collection_step is not None, "evaluation": self.evaluation is not None,
                 **{name: name in self.updates for name in COMPONENTS}}
        return [part for part in PARTS if needed[part] and not known[part]]


@dataclass
class RunSchedule:
    """What each epoch of a run does (the trainer's schedules)."""

    epochs: int
    collection: CollectionSchedule
    components: dict[str, ComponentSchedule]
    eval_every: int | None  # None: no evaluation


def project(schedule: RunSchedule, costs: Costs) -> list[dict[str, float]]:
    """Seconds per part (``PARTS``) for every epoch (a list, epoch 1 first); unmeasured parts count 0."""
    rows = []
    for epoch in range(1, schedule.epochs + 1):
        row = dict.fromkeys(PARTS, 0.0)
        row["collection"] = schedule.collection.steps_at(epoch) * (costs.collection_step or 0.0)
        for name, component in schedule.components.items():
            row[name] = component.steps_at(epoch) * costs.updates.get(name, 0.0)
        every = schedule.eval_every
        if every is not None and (epoch % every == 0 or epoch == schedule.epochs):
            row["evaluation"] = costs.evaluation or 0.0
        rows.append(row)
    return rows


def duration(seconds: float) -> str:
    """``42 s``, ``12.5 min``, ``3.2 h``, ``80 h (3.3 days)``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 3600:.0f} h ({seconds / 86400:.1f} days)"


@dataclass
class RunClock:
    """The costs of a run measured from its epochs' metrics, and the projection they give.

    Epoch 1's costs include warm-up (first calls, allocations), so a later epoch's measurement of the
    same piece replaces it. ``observe`` returns a line to print (the projected whole run) after epoch 2,
    naming the pieces not measured yet (a component that starts later, an evaluation every 50 epochs),
    and again once every piece has been measured; else None."""

    schedule: RunSchedule
    costs: Costs = field(default_factory=Costs)
    announced: str = ""  # "partial": a projection without the pieces not run yet was printed; "complete"
    _steady: set[str] = field(default_factory=set)

    def _measured(self, part: str, epoch: int) -> bool:
        """Whether ``part``'s cost from ``epoch`` should be taken (the first, or the first after epoch 1)."""
        if part in self._steady:
            return False
        if epoch > 1:
            self._steady.add(part)
        return True

    def observe(self, epoch: int, metrics: dict[str, float]) -> str | None:
        steps = self.schedule.collection.steps_at(epoch)
        rate = metrics.get("collection/train/steps_per_second")
        if steps and rate and self._measured("collection", epoch):
            self.costs.collection_step = 1.0 / rate
        for name, component in self.schedule.components.items():
            seconds = metrics.get(f"{name}/seconds")
            if seconds is not None and component.steps_at(epoch) and self._measured(name, epoch):
                self.costs.updates[name] = seconds / component.steps_at(epoch)
        if "evaluation/seconds" in metrics and self._measured("evaluation", epoch):
            self.costs.evaluation = metrics["evaluation/seconds"]
        missing = self.costs.missing(self.schedule)
        if self.announced == "complete" or (missing and (self.announced or epoch < 2)):
            return None
        self.announced = "partial" if missing else "complete"
        line = (f"projected on this machine: the whole run ~{duration(self.total())}, "
                f"~{duration(self.left(epoch))} left")
        return line + (f" (not counting the {', '.join(missing)}: not measured yet)" if missing else "")

    def total(self) -> float:
        return sum(sum(row.values()) for row in project(self.schedule, self.costs))

    def left(self, epoch: int) -> float:
        """Seconds of the epochs after ``epoch``."""
        return sum(sum(row.values()) for row in project(self.schedule, self.costs)[epoch:])

    def postfix(self, epoch: int) -> str:
        """For the epochs' progress bar: the projected time left (``~`` when a piece is still unmeasured)."""
        unknown = self.costs.missing(self.schedule)
        return f"~{duration(self.left(epoch))} left" + (f" + {', '.join(unknown)} (unmeasured)" if unknown else "")
