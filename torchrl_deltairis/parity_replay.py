"""Replaying the reference's greedy draws in our imagined rollouts, so that parity holds on any CPU.

A greedy rollout is a chain of draws (action, reward class, end, 4 tokens per step) and frame roundings;
a draw whose two best logits lie within the sum of their tolerances, or a pixel within ``ATOL`` of a
rounding boundary, can go either way on another CPU, and everything after it follows. The fixtures carry a
trace of every draw: :class:`DrawReplay` checks our log-probabilities against each one and takes the
fixture's choice at a near-tie; without a trace, :func:`replay_rollout` searches the near-ties.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from torchrl_deltairis import functional, keys
from torchrl_deltairis.envs.imagination import to_uint8_frames
from torchrl_deltairis.parity_rows import ATOL, PARTED, PIXEL_LEVELS, RTOL, ParityRow, compare, compare_rounded


def tie_bound(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """How close two logits may lie and still be drawn in either order by code that passes this check.

    Each logit of ours may differ from the reference's by its tolerance ``ATOL + RTOL * |x|`` (the same
    as every float row). Two logits whose gap is at most the sum of their tolerances can therefore swap
    order between two runs that both pass, e.g. the reference's on one CPU and ours on another (other
    kernels, other accumulation orders). Such a draw is a near-tie: either choice is right.
    """
    return 2 * ATOL + RTOL * (a.abs() + b.abs())


def rounding_ties(frame: torch.Tensor) -> torch.Tensor:
    """Per row of decoded frames ``[B, C, H, W]`` (floats in [0, 1]): how many pixels lie within ``ATOL``
    of a boundary between two 1/255 levels, where code that passes :func:`compare_rounded` may round
    either way. On another CPU a few such pixels (float noise ~1e-6) land one level apart, and the next
    frame, decoded from this one, amplifies that (on the small fixtures: 5 pixels one level apart after
    one imagined step, 1,100 after two, 12,000 by up to 13 levels after three)."""
    scaled = frame.double().clamp(0, 1) * PIXEL_LEVELS
    distance = ((scaled - scaled.floor()) - 0.5).abs() / PIXEL_LEVELS
    return (distance <= ATOL).flatten(1).sum(-1)


def trace_near_ties(trace: Mapping[str, Any]) -> list[tuple[int, int, str, float]]:
    """(draw, row, kind, gap) of every recorded draw whose choice has a rival within :func:`tie_bound`."""
    ties = []
    for i, (kind, logits, choice) in enumerate(zip(trace["kind"], trace["logits"], trace["choice"])):
        logits = logits.reshape(-1, logits.size(-1)).double()
        best = logits.gather(-1, choice.reshape(-1, 1))
        close = best - logits <= tie_bound(best, logits)
        close.scatter_(-1, choice.reshape(-1, 1), False)
        for row, index in close.nonzero().tolist():
            ties.append((i, row, kind, (best[row, 0] - logits[row, index]).item()))
    return ties


@dataclass
class NearTie:
    draw: int
    step: int
    row: int
    kind: str
    ours: int
    taken: int
    gap: float
    bound: float

    def __str__(self) -> str:
        return (f"step {self.step} row {self.row} {self.kind}: {self.ours} -> {self.taken} "
                f"(gap {self.gap:.1e} <= {self.bound:.1e})")


class DrawReplay:
    """The ``draw_fn`` of a parity rollout: every greedy draw and every rounding of a decoded frame goes
    through it, in the reference's order (per imagined step: the action, then reward, end, 4 latents,
    then the frame).

    - ``trace`` (the fixture's ``kind``, ``logits`` [B, 1, V], ``choice`` [B, 1] per draw; the logits
      normalised to log-probabilities, as ``torch.distributions.Categorical`` holds them): each draw's
      log-probabilities must be within the tolerance of the recorded ones; where our argmax differs
      from the recorded choice and the recorded logits of the two lie within :func:`tie_bound`, the
      recorded choice is taken (``adopted``); any other difference goes to ``errors``.
    - ``frames`` (the fixture's frames [B, H, C, H, W]): each decoded frame that rounds to the fixture's
      within :func:`compare_rounded`'s rule is replaced by the fixture's (pixels at a rounding boundary
      are near-ties too); one that does not is an error. Without them, a row whose decoded frame has
      :func:`rounding_ties` is compared only up to that frame: ``first_uncomparable[row]`` is the first
      step whose outputs another CPU may compute from another frame. Later draws of that row take the
      trace's choice, unchecked, to stay as close to the reference's trajectory as can be.
    - ``forced`` ({(draw, row): index}) overrides given draws (the trace-less search).
    """

    def __init__(self, trace: Mapping[str, Any] | None = None, frames: torch.Tensor | None = None,
                 forced: Mapping[tuple[int, int], int] | None = None) -> None:
        self.trace, self.frames, self.forced = trace, frames, dict(forced or {})
        self.logits: list[torch.Tensor] = []
        self.kinds: list[str] = []
        self.steps: list[int] = []
        self.step = 0
        self.first_uncomparable: torch.Tensor | None = None  # [B], set at the first draw
        self.adopted: list[NearTie] = []
        self.frame_pixels_adopted = 0
        self.errors: list[str] = []

    def __call__(self, kind: str, x: torch.Tensor) -> torch.Tensor:
        if self.first_uncomparable is None:
            self.first_uncomparable = torch.full((x.size(0),), 1 << 30, dtype=torch.long)
        if kind == "frame":
            return self._frame(x)
        i, logits = len(self.logits), x.float().log_softmax(-1)  # the gaps are those of the raw logits
        self.logits.append(logits.detach().cpu())
        self.kinds.append(kind)
        self.steps.append(self.step)
        taken = logits.argmax(-1)
        if self.trace is not None:
            taken = self._replay(i, kind, logits.detach().cpu(), taken.cpu()).to(taken.device)
        for (draw, row), index in self.forced.items():
            if draw == i:
                taken[row] = index
        return taken

    def _frame(self, decoded: torch.Tensor) -> torch.Tensor:
        t, self.step = self.step, self.step + 1
        ours = to_uint8_frames(decoded)
        if self.frames is None:
            tied = (rounding_ties(decoded.cpu()) > 0) & (self.first_uncomparable > t + 1)
            self.first_uncomparable[tied] = t + 1
            return ours
        expected = self.frames[:, t].to(decoded.device)
        row = compare_rounded("frame", functional.pixels_to_float(ours), decoded.clamp(0, 1), expected)
        if row.status != "PASS":
            self.errors.append(f"step {t} frame: {row.note or row.max_abs_error}")
            return ours
        self.frame_pixels_adopted += int((functional.pixels_to_float(ours) != expected).sum())
        return to_uint8_frames(expected)

    def _replay(self, i: int, kind: str, logits: torch.Tensor, ours: torch.Tensor) -> torch.Tensor:
        kinds = self.trace["kind"]
        if i >= len(kinds) or kinds[i] != kind:
            self.errors.append(f"draw {i}: ours is a {kind!r} draw, the trace has "
                               f"{kinds[i] if i < len(kinds) else 'no more'!r}")
            return ours
        expected = self.trace["logits"][i].reshape(logits.shape).float()
        recorded = self.trace["choice"][i].reshape(ours.shape)
        checked = self.first_uncomparable > self.step
        if not torch.allclose(logits[checked], expected[checked], atol=ATOL, rtol=RTOL):
            err = (logits[checked] - expected[checked]).abs().max().item()
            self.errors.append(f"draw {i} ({kind}): log-probabilities {err:.1e} from the trace's")
        taken = torch.where(checked, ours, recorded)
        for row in ((ours != recorded) & checked).nonzero().flatten().tolist():
            a, b = expected[row, recorded[row]], expected[row, ours[row]]
            gap, bound = (a - b).item(), tie_bound(a, b).item()
            tie = NearTie(i, self.step, row, kind, int(ours[row]), int(recorded[row]), gap, bound)
            if gap <= bound:
                self.adopted.append(tie)
                taken[row] = recorded[row]
            else:
                self.errors.append(f"{tie}: not a near-tie")
        return taken

    def near_ties(self) -> list[NearTie]:
        """Our own draws with another index within :func:`tie_bound` of the argmax, in rows still compared."""
        ties = []
        for i, (kind, step, logits) in enumerate(zip(self.kinds, self.steps, self.logits)):
            top = logits.argmax(-1, keepdim=True)
            best = logits.gather(-1, top)
            close = best - logits <= tie_bound(best, logits)
            close.scatter_(-1, top, False)
            close &= (self.first_uncomparable > step).unsqueeze(-1)
            for row, index in close.nonzero().tolist():
                gap = (best[row, 0] - logits[row, index]).item()
                ties.append(NearTie(i, step, row, kind, int(top[row]), index, gap,
                                    tie_bound(best[row, 0], logits[row, index]).item()))
        return ties


_MAX_SEARCHED_ROLLOUTS = 64


def _compare_comparable(expected: Mapping[str, torch.Tensor], out: Mapping[str, torch.Tensor],
                        first: torch.Tensor, horizon: int) -> list[ParityRow]:
    """Rows for ``expected``, each compared where another CPU computes it from the same frames: per-step
    outputs ``[B, H, ...]`` of row b up to step ``first[b]``, per-row outputs of rows that never part
    ways, batch means only if no row does."""
    rows = []
    everywhere = bool((first > horizon).all())
    for key, value in expected.items():
        ours = out.get(key)
        if everywhere or ours is None or ours.shape != value.shape:
            rows.append(compare(key, ours, value))
            continue
        per_step = value.ndim >= 2 and value.size(1) == horizon
        keep = [(b, min(int(first[b]), horizon) if per_step else (horizon if first[b] > horizon else 0))
                for b in range(value.size(0))] if value.ndim else []
        parts = [(ours[b, :n] if per_step else ours[b:b + 1], value[b, :n] if per_step else value[b:b + 1])
                 for b, n in keep if n > 0]
        if not parts:
            rows.append(ParityRow(key, PARTED, None, "every row parts ways at a rounding tie before it"))
            continue
        row = compare(key, torch.cat([p.flatten() for p, _ in parts]), torch.cat([e.flatten() for _, e in parts]))
        compared = sum(p.numel() for p, _ in parts)
        rows.append(ParityRow(key, row.status, row.max_abs_error,
                              f"compared {compared}/{value.numel()} values, before rows part ways"))
    return rows


def replay_rollout(run: Callable[[DrawReplay], dict[str, torch.Tensor]], expected: Mapping[str, torch.Tensor],
                   horizon: int, *, trace: Mapping[str, Any] | None = None,
                   frames: torch.Tensor | None = None) -> tuple[list[ParityRow], ParityRow]:
    """Runs a greedy rollout (``run(draw_fn) -> outputs``) against the reference's, draw by draw.

    With the fixture's trace the rollout replays it (:class:`DrawReplay`). Without one (fixtures made
    before traces were recorded), the near-ties of our own draws are where the reference may have gone
    the other way: rollouts that take the other index at some of them are searched, earliest draw
    first, for one whose outputs match the fixture's (at most 64 rollouts). Only draws within
    :func:`tie_bound` are ever changed, so a real difference still fails. With the fixture's
    ``frames``, decoded frames are replayed too; without them each row is compared up to its first
    rounding tie (:func:`rounding_ties`), unless everything matches as it stands (the fixture's own CPU).
    Returns the rows for ``expected`` and one that says how the draws were met.
    """
    def evaluate(replay):
        out = run(replay)
        rows = [compare(key, out.get(key), value) for key, value in expected.items()]
        if not all(r.status == "PASS" for r in rows) and frames is None:
            rows = _compare_comparable(expected, out, replay.first_uncomparable, horizon)
        return rows, not replay.errors and all(r.status in ("PASS", PARTED) for r in rows)

    def summary(replay, rows):
        parts = [f"{len(replay.logits)} draws"]
        if trace is not None:
            parts.append(f"{len(trace_near_ties(trace))} near-ties in the trace")
        if replay.frame_pixels_adopted:
            parts.append(f"{replay.frame_pixels_adopted} pixels of the fixture's frames one level from ours "
                         "(rounding ties) taken")
        if any(r.note.startswith(("compared", "every row")) for r in rows):
            parted = int((replay.first_uncomparable <= horizon).sum())
            parts.append(f"{parted}/{len(replay.first_uncomparable)} rows compared up to their first frame "
                         "with a rounding tie")
        return ", ".join(parts)

    if trace is not None:
        replay = DrawReplay(trace, frames)
        rows, ok = evaluate(replay)
        ties = "; ".join(map(str, replay.adopted))
        note = f"{summary(replay, rows)}; {len(replay.adopted)} of them took the trace's choice{': ' + ties if ties else ''}"
        if replay.errors:
            note = "; ".join(replay.errors[:3]) + " | " + note
        return rows, ParityRow("", "PASS" if ok else "FAIL", None, note)

    first, tried = None, 0
    stack: list[dict[tuple[int, int], int]] = [{}]
    while stack and tried < _MAX_SEARCHED_ROLLOUTS:
        forced = stack.pop()
        replay = DrawReplay(frames=frames, forced=forced)
        (rows, ok), tried = evaluate(replay), tried + 1
        first = first or (rows, replay)
        if ok:
            taken = [str(t) for t in replay.near_ties() if (t.draw, t.row) in forced]
            note = (f"no trace; {summary(replay, rows)}, {len(replay.near_ties())} near-ties, {len(forced)} taken the "
                    f"other way{': ' + '; '.join(taken) if taken else ''} ({tried} rollouts searched)")
            return rows, ParityRow("", "PASS", None, note)
        last = max((d for d, _ in forced), default=-1)
        for tie in reversed([t for t in replay.near_ties() if t.draw > last]):  # earliest on top
            stack.append({**forced, (tie.draw, tie.row): tie.taken})
    rows, replay = first
    note = f"no trace; {summary(replay, rows)}; no rollout among {tried} that differ at near-ties matches the fixture"
    return rows, ParityRow("", "FAIL", None, "; ".join(replay.errors[:3] + [note]))


class ReplayedActor:
    """The policy with its (greedy) action draw routed through a :class:`DrawReplay`."""

    def __init__(self, actor, replay: DrawReplay) -> None:
        self.actor, self.replay = actor, replay

    def __call__(self, td):
        td = self.actor(td)
        logits, action = td.get(keys.LOGITS), td.get(keys.ACTION)
        taken = self.replay("action", logits)
        if not torch.equal(taken, action):
            td.set(keys.ACTION, taken)
            td.set(keys.ACTION_LOG_PROB, torch.distributions.Categorical(logits=logits).log_prob(taken))
        return td
