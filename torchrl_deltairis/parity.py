"""Numerical parity with the reference Δ-IRIS code, on a fixture made by running the reference's code
(weights, inputs, outputs; ``tests/data/README.md`` describes the format).

Usage::

    python -m torchrl_deltairis.parity FIXTURE.pt [FIXTURE.pt ...]

Loads the fixture's config and reference-format weights into our models (eval mode), recomputes every
output this project can compute from the fixture's inputs and prints one row per output key: the
maximum absolute error and PASS / FAIL (exact for integer and bool outputs, ``atol = rtol = 1e-4`` for
floats). Keys it cannot compute print ``not run``. The exit status is 0 only if nothing failed and
nothing was not run.

Imagination holds on any CPU. A greedy rollout is a chain of draws (action, reward class, end, 4
tokens per step) and of roundings (each decoded frame to 1/255 levels), and a CPU other than the one
that made the fixture computes every logit and pixel with other float noise (~1e-6). Where two logits
lie within the tolerance of each other (:func:`tie_bound`), or a pixel within the tolerance of a
rounding boundary (:func:`rounding_ties`), either outcome is right, and everything after it follows
the one taken. So each rollout goes through a :class:`DrawReplay`:

- draws replay the fixture's ``<prefix>.trace`` (every draw's log-probabilities and choice): our
  log-probabilities must match the recorded ones; at a near-tie the recorded choice is taken;
- the rollout driven by the fixture's actions takes the fixture's frames wherever ours round to them
  up to such ties, so it is compared at every step;
- the actor-critic's rollout (whose frames the fixture does not hold) is compared in full where it
  matches as it stands (the fixture's own CPU), and otherwise per row up to its first frame with a
  rounding tie; outputs computed after it print ``parted``;
- a fixture without a trace (made before traces were recorded) has its near-ties found in our own
  draws, and the rollouts that take the other side of some of them are searched for the fixture's.

The ``.trace`` rows say what was met: how many draws, near-ties, adopted pixels, parted rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from tensordict import TensorDict

from torchrl.envs import ExplorationType, set_exploration_type
from torchrl.modules import set_recurrent_mode

from torchrl_deltairis import functional, keys
from torchrl_deltairis.checkpoint import read_torch_file
from torchrl_deltairis.envs.imagination import ImaginationEnv, imagine, to_uint8_frames
from torchrl_deltairis.objectives import TokenizerLoss, WorldModelLoss
from torchrl_deltairis.objectives.actor_critic_loss import ImaginationActorCriticLoss
from torchrl_deltairis.objectives.loss_slot import ActorCriticLossConfig
from torchrl_deltairis.policy import ActorCriticTrunk, make_actor, recurrent_state_spec
from torchrl_deltairis.reference import DeltaIrisModels, configs_from_reference, load_reference_checkpoint

__all__ = ["ParityRow", "compute_outputs", "run_parity", "flatten_outputs", "main"]

ATOL = RTOL = 1e-4
PARTED = "parted"
"""The status of an output that the reference, on the CPU that made the fixture, computed from other
frames than ours (a rollout that parted ways at a rounding tie, :func:`rounding_ties`): not compared."""
_ROUNDED_KEY = "tokenizer.encode_decode"
_UNROUNDED = "tokenizer.encode_decode:unrounded"
_LEVELS = 255
_TOKENIZER_LOSS_NAMES = {  # fixture name → our loss key
    "commitment_loss": "loss_commitment", "reconstruction_loss_l1": "loss_reconstruction_l1",
    "reconstruction_loss_l2": "loss_reconstruction_l2",
    "reconstruction_loss_l2_worst_pixel": "loss_reconstruction_l2_worst_pixel",
}


@dataclass
class ParityRow:
    key: str
    status: str
    """'PASS', 'FAIL' or 'not run'"""
    max_abs_error: float | None = None
    note: str = ""


def flatten_outputs(outputs: Mapping[str, Any], prefix: str = "") -> dict[str, torch.Tensor]:
    """Nested fixture outputs → ``{"a.b.c": tensor}``; entries ending in ``.inputs`` (inputs) and
    ``.trace`` (the reference's draws, replayed by :class:`DrawReplay`) are skipped."""
    flat = {}
    for key, value in outputs.items():
        name = f"{prefix}{key}"
        if name.endswith((".inputs", ".trace")):
            continue
        if isinstance(value, Mapping):
            flat.update(flatten_outputs(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


@torch.no_grad()
def compute_outputs(models: DeltaIrisModels, inputs: Mapping[str, torch.Tensor],
                    fixture_outputs: Mapping[str, Any]) -> dict[str, torch.Tensor | ParityRow]:
    """Everything this project can compute of a fixture's outputs, keyed as in the fixture; the
    imagination rollouts' keys come already compared (:func:`replay_rollout`), as rows."""
    models.eval()
    obs, act = inputs["observations"], inputs["actions"]
    x1, a, x2 = obs[:, :-1], act[:, :-1], obs[:, 1:]
    out: dict[str, torch.Tensor] = {}

    quantized = models.tokenizer(x1, a, x2)
    out["tokenizer.tokens"], out["tokenizer.q"] = quantized.tokens, quantized.q
    out["tokenizer.encode_decode"] = models.tokenizer.encode_decode(x1, a, x2)
    out[_UNROUNDED] = models.tokenizer.decode(x1, a, quantized.q).clamp(0, 1)
    td = TensorDict(pixels=obs, action=act, reward=inputs["rewards"], terminated=inputs["ends"],
                    mask_padding=inputs["mask_padding"], batch_size=act.shape)
    tok_losses = TokenizerLoss(models.tokenizer, models.configs.tokenizer_loss).eval()(td)
    for name, ours in _TOKENIZER_LOSS_NAMES.items():
        out[f"tokenizer.losses.{name}"] = tok_losses[ours]
    out["tokenizer.loss_total"] = sum(tok_losses[k] for k in _TOKENIZER_LOSS_NAMES.values())

    wm_loss = WorldModelLoss(models.world_model, models.tokenizer, models.configs.world_model_loss).eval()
    wm_losses = wm_loss(td)
    for name in ("loss_latents", "loss_rewards", "loss_ends"):
        out[f"world_model.losses.{name}"] = wm_losses[name]
    out["world_model.latent_accuracy"] = wm_losses["latent_accuracy"]
    wm_out = models.world_model(models.world_model.training_sequence(obs, act, quantized.tokens))
    out["world_model.logits_latents"] = wm_out.logits_latents
    out["world_model.logits_rewards"] = wm_out.logits_rewards
    out["world_model.logits_ends"] = wm_out.logits_ends

    burn_in = models.configs.actor_critic_training.get("burn_in_length")
    if burn_in is not None and obs.size(1) > burn_in:  # the imagination context, through the KV cache
        context_obs, context_act = obs[:, :burn_in + 1], act[:, :burn_in]
        cache = models.world_model.transformer.make_kv_cache(obs.size(0), device=obs.device)
        sequence = models.world_model.burn_in_sequence(
            context_obs, context_act, models.tokenizer.burn_in(context_obs, context_act))
        out["imagination.burn_in_output_sequence"] = models.world_model(sequence, kv_cache=cache).output_sequence
        out.update(_imagination_outputs(models, context_obs, context_act, fixture_outputs))

    ac = models.actor_critic.model.unroll(obs)
    out["actor_critic.logits_actions"] = ac.logits_actions
    out["actor_critic.logits_values"] = ac.logits_values

    lr = fixture_outputs.get("lambda_returns.inputs")
    if lr is not None:
        training = models.configs.actor_critic_training
        out["lambda_returns"] = functional.lambda_returns(
            rewards=lr["rewards"], values=lr["values"], ends=lr["ends"],
            value_bootstrap=lr["value_bootstrap"], gamma=training["gamma"], lambda_=training["lambda_"])
    if "two_hot.inputs" in fixture_outputs:
        out["two_hot"] = functional.two_hot(functional.symlog(fixture_outputs["two_hot.inputs"]))
    return out


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
    scaled = frame.double().clamp(0, 1) * _LEVELS
    distance = ((scaled - scaled.floor()) - 0.5).abs() / _LEVELS
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


class _ReplayedActor:
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


def _imagination_outputs(models: DeltaIrisModels, context_obs: torch.Tensor, context_act: torch.Tensor,
                         fixture_outputs: Mapping[str, Any]) -> dict[str, ParityRow]:
    """Rows for ``imagination.*`` (the fixture's actions), ``ac_imagine.*`` and ``actor_critic.losses``:
    greedy world model, the policy under ``ExplorationType.MODE``, values from the EMA target; each
    rollout meets the reference's draws through :func:`replay_rollout`, which adds a row
    ``<prefix>.trace`` saying how."""
    context = TensorDict({keys.PIXELS: to_uint8_frames(context_obs), keys.ACTION: context_act},
                         batch_size=context_act.shape[:1])
    expected = flatten_outputs(fixture_outputs)
    rows: list[ParityRow] = []
    actions = fixture_outputs.get("imagination.actions")
    if actions is not None:
        run = functools.partial(_fixed_action_rollout, models, context, actions)
        wanted = {k: expected[k] for k in _FIXED_ACTION_KEYS if k in expected}
        found, trace_row = replay_rollout(run, wanted, actions.size(1), trace=fixture_outputs.get("imagination.trace"),
                                          frames=fixture_outputs.get("imagination.frames"))
        rows += [dataclasses.replace(trace_row, key="imagination.trace"), *found]
    horizon = models.configs.actor_critic_training.get("imagination_horizon")
    if horizon is not None:
        run = functools.partial(_actor_critic_rollout, models, context)
        wanted = {k: v for k, v in expected.items() if k.startswith(_AC_PREFIXES)}
        found, trace_row = replay_rollout(run, wanted, horizon, trace=fixture_outputs.get("ac_imagine.trace"))
        rows += [dataclasses.replace(trace_row, key="ac_imagine.trace"), *found]
    return {row.key: row for row in rows}


_FIXED_ACTION_KEYS = ("imagination.frames", "imagination.rewards", "imagination.dones")
_DRIVING_INPUTS = ("imagination.actions",)  # the fixture's outputs that drive our fixed-action rollout
_AC_PREFIXES = ("ac_imagine.", "actor_critic.losses.", "actor_critic.policy_entropy")


def _env(models: DeltaIrisModels, device: torch.device, draw_fn: DrawReplay) -> ImaginationEnv:
    state_spec = recurrent_state_spec(models.configs.actor_critic.lstm_dim, device=device)
    return ImaginationEnv(models.tokenizer, models.world_model, sample=False, policy_state_spec=state_spec,
                          draw_fn=draw_fn)


def _fixed_action_rollout(models: DeltaIrisModels, context: TensorDict, actions: torch.Tensor,
                          draw_fn: DrawReplay) -> dict[str, torch.Tensor]:
    env = _env(models, actions.device, draw_fn)
    steps = []
    td = env.reset(context=context)
    for t in range(actions.size(1)):
        td = env.step(td.set(keys.ACTION, actions[:, t]))
        steps.append(td.get("next").clone(False))
        td = env.step_mdp(td)
    nxt = torch.stack(steps, dim=1)
    return {"imagination.frames": functional.pixels_to_float(nxt.get(keys.PIXELS)),
            "imagination.rewards": nxt.get(keys.REWARD)[..., 0], "imagination.dones": nxt.get(keys.DONE)[..., 0]}


def _actor_critic_rollout(models: DeltaIrisModels, context: TensorDict,
                          draw_fn: DrawReplay) -> dict[str, torch.Tensor]:
    training = models.configs.actor_critic_training
    config = ActorCriticLossConfig(gamma=training["gamma"], lambda_=training["lambda_"],
                                   entropy_weight=training["entropy_weight"])
    env = _env(models, context.device, draw_fn)
    actor = _ReplayedActor(make_actor(models.actor_critic.model), draw_fn)
    with set_exploration_type(ExplorationType.MODE):
        rollout = imagine(env, actor, models.actor_critic, context, training["imagination_horizon"])
    with set_recurrent_mode(True):  # the online critic over the imagined frames
        critic = ActorCriticTrunk(models.actor_critic.model)
        value_logits = critic(rollout.clone(False)).get(keys.VALUE_LOGITS)
    out = {
        "ac_imagine.actions": rollout.get(keys.ACTION), "ac_imagine.logits_actions": rollout.get(keys.LOGITS),
        "ac_imagine.logits_values": value_logits if value_logits.size(-1) > 1 else value_logits[..., 0],
        "ac_imagine.rewards": rollout.get(keys.NEXT_REWARD)[..., 0],
        "ac_imagine.ends": rollout.get(keys.NEXT_TERMINATED)[..., 0].long(),
        "ac_imagine.target_values": rollout.get(keys.TARGET_STATE_VALUE)[..., 0],
        "ac_imagine.value_bootstrap": rollout.get(("next", keys.TARGET_STATE_VALUE))[:, -1, 0]}
    losses = ImaginationActorCriticLoss(models.actor_critic, config)(rollout)
    for name in ("loss_actions", "loss_entropy", "loss_values"):
        out[f"actor_critic.losses.{name}"] = losses.get(name)
    out["actor_critic.policy_entropy"] = losses.get("policy_entropy")
    return out


def compare(key: str, ours: torch.Tensor | None, expected: torch.Tensor) -> ParityRow:
    """One row: exact comparison for integer / bool outputs, allclose(1e-4, 1e-4) for floats."""
    if ours is None:
        return ParityRow(key, "not run")
    ours = ours.detach().cpu()
    if ours.shape != expected.shape:
        return ParityRow(key, "FAIL", None, f"shape {tuple(ours.shape)}, expected {tuple(expected.shape)}")
    if ours.numel() == 0:
        return ParityRow(key, "PASS", 0.0)
    err = (ours.double() - expected.double()).abs().max().item()
    if expected.is_floating_point():
        ok = torch.allclose(ours.double(), expected.double(), atol=ATOL, rtol=RTOL)
    else:
        ok = torch.equal(ours.to(expected.dtype), expected)
    return ParityRow(key, "PASS" if ok else "FAIL", err)


def compare_rounded(key: str, ours: torch.Tensor, unrounded: torch.Tensor,
                    expected: torch.Tensor) -> ParityRow:
    """Frames rounded to 1/255 steps: the tolerance applies before the rounding.

    A pixel passes if a value within ``ATOL`` of our unrounded output rounds to the fixture's value, i.e.
    if its distance to the fixture's rounding interval [e - 0.5/255, e + 0.5/255] is at most ``ATOL``.
    A plain comparison would fail wherever float noise (which differs between CPUs, thread counts and
    batch shapes, ~1e-6 here) straddles a rounding boundary. The row reports that distance and how
    many pixels round to a neighbouring level.
    """
    row = compare(key, ours, expected)
    if row.status == "PASS" or row.max_abs_error is None:
        return row
    half = 0.5 / _LEVELS
    distance = ((unrounded.double() - expected.double()).abs() - half).clamp_min(0).max().item()
    flipped = int(((ours - expected).abs() > half).sum())
    ok = distance <= ATOL and row.max_abs_error <= 1.0 / _LEVELS + ATOL
    note = f"{flipped}/{expected.numel()} pixels one level off; distance before rounding {distance:.1e}"
    return ParityRow(key, "PASS" if ok else "FAIL", distance, note)


def run_parity(fixture: Mapping[str, Any] | str) -> list[ParityRow]:
    """Loads a fixture (path or loaded dict) and compares every output key."""
    if not isinstance(fixture, Mapping):
        fixture = read_torch_file(fixture, "the parity fixture")
    configs = configs_from_reference(fixture["config"])
    models = load_reference_checkpoint(fixture["state_dict"], configs)
    fixture_outputs = fixture["outputs"]
    ours = compute_outputs(models, fixture["inputs"], fixture_outputs)
    expected = flatten_outputs(fixture_outputs)
    rows = [row for key, row in ours.items() if key.endswith(".trace")]  # how each rollout met the reference's
    for key, value in expected.items():
        if key in _DRIVING_INPUTS:  # what drives our rollout: comparing it would compare it with itself
            continue
        if isinstance(ours.get(key), ParityRow):  # compared by replay_rollout
            rows.append(ours[key])
        elif key == _ROUNDED_KEY and key in ours:
            rows.append(compare_rounded(key, ours[key], ours[_UNROUNDED], value))
        else:
            rows.append(compare(key, ours.get(key), value))
    return rows


def format_rows(rows: list[ParityRow]) -> str:
    width = max(len(r.key) for r in rows)
    lines = [f"{'key':<{width}}  {'max abs error':>13}  result"]
    for r in rows:
        err = "" if r.max_abs_error is None else f"{r.max_abs_error:.3e}"
        lines.append(f"{r.key:<{width}}  {err:>13}  {r.status}{'  ' + r.note if r.note else ''}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fixtures", nargs="+", help="parity fixture(s) (.pt)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    all_ok = True
    for path in args.fixtures:
        rows = run_parity(path)
        passed, parted = sum(r.status == "PASS" for r in rows), sum(r.status == PARTED for r in rows)
        print(f"== {path}: {passed}/{len(rows)} passed, {sum(r.status == 'FAIL' for r in rows)} failed, "
              f"{sum(r.status == 'not run' for r in rows)} not run, {parted} parted (computed from other "
              "frames by the fixture's CPU: see the .trace rows)")
        print(format_rows(rows))
        all_ok &= passed + parted == len(rows)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
