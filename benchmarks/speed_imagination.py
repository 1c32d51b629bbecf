"""Actor-critic training step and imagination throughput (docs/speed.md), used by ``benchmarks/speed.py``.

- Actor-critic step: 4 trajectories, burn-in 5, horizon 15 (Crafter) / 20 (Atari), including the
  whole imagination (burn-in of both LSTMs, env reset from the context, ``env.rollout`` with the
  sampling policy, target values), the loss, backward, clipping at 10, the Adam step and the
  ``SoftUpdate`` of the EMA target (``optim.apply_gradients``, as the trainer).
- Imagination: reset from a 6-frame context, then H steps with random actions, at batch B; the rate
  is B·H imagined steps per second. ``loop`` drives :class:`ImaginationCore` in a plain Python loop,
  ``rollout`` drives the same core through ``ImaginationEnv.rollout``; their difference is the
  TorchRL/TensorDict overhead.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase

if __package__ in (None, ""):  # run as a file: import the sibling scripts as the benchmarks package
    sys.path[0] = str(Path(__file__).resolve().parents[1])
from benchmarks import roofline
from benchmarks.timing import stopwatch
from torchrl_deltairis import keys
from torchrl_deltairis.envs.imagination import ImaginationEnv, imagine
from torchrl_deltairis.modules.models import Execution, compile_models, configure_execution
from torchrl_deltairis.objectives.loss_assembly import build_actor_critic_loss, make_target_updater
from torchrl_deltairis.objectives.loss_slot import ActorCriticLossConfig
from torchrl_deltairis.optim import apply_gradients
from torchrl_deltairis.policy import make_actor, recurrent_state_spec
from torchrl_deltairis.reference import DeltaIrisModels

# The reference on this machine's CPU (2 threads); None where it fails (bf16 Crafter).
REFERENCE_AC_SECONDS = {"crafter": (2.13, None), "atari": (2.30, 1.56)}
REFERENCE_IMAGINATION_STEPS_PER_S = {
    ("crafter", "fp32"): {1: 30.6, 16: 58.3, 64: 39.3}, ("crafter", "bf16"): {},
    ("atari", "fp32"): {1: 41.8, 16: 82.7, 64: 48.1}, ("atari", "bf16"): {1: 45.2, 16: 163.3, 64: 115.4},
}
NUM_TRAJECTORIES, BURN_IN, LR, MAX_GRAD_NORM = 4, 5, 1e-4, 10.0
HORIZON = {"crafter": 15, "atari": 20}
TRAINING = {"crafter": dict(gamma=0.997, entropy_weight=0.001),
            "atari": dict(gamma=0.995, entropy_weight=0.002)}


def context(models: DeltaIrisModels, batch: int, device: torch.device, seed: int = 0) -> TensorDict:
    g = torch.Generator().manual_seed(seed)
    return TensorDict(
        pixels=torch.randint(0, 256, (batch, BURN_IN + 1, 3, 64, 64), generator=g, dtype=torch.uint8),
        action=torch.randint(0, models.configs.world_model.num_actions, (batch, BURN_IN), generator=g),
        batch_size=[batch]).to(device)


class ActorCriticStep:
    """One actor-critic training step on fixed synthetic contexts (reference objective)."""

    def __init__(self, models: DeltaIrisModels, variant: str, device: torch.device,
                 imagination_bf16: bool = False, compile: bool | str = False) -> None:
        self.models, self.device, self.horizon = models, device, HORIZON[variant]
        spec = recurrent_state_spec(models.configs.actor_critic.lstm_dim, device=device)
        self.env = ImaginationEnv(models.tokenizer, models.world_model, sample=True, policy_state_spec=spec,
                                  autocast_dtype=torch.bfloat16 if imagination_bf16 else None, compile_step=compile)
        self.actor = make_actor(models.actor_critic.model)
        config = ActorCriticLossConfig(**TRAINING[variant])
        self.loss = build_actor_critic_loss(models.actor_critic, config)
        self.updater = make_target_updater(self.loss, config.target_ema_decay)
        self.params = list(models.actor_critic.model.parameters())
        self.optimizer = torch.optim.Adam(self.params, lr=LR)
        self.data = context(models, NUM_TRAJECTORIES, device)

    def timed(self, bf16: bool) -> float:
        with stopwatch(self.device) as elapsed:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
                rollout = imagine(self.env, self.actor, self.models.actor_critic, self.data, self.horizon)
                out = self.loss(rollout)
                total = sum(v for k, v in out.items() if k.startswith("loss_"))
            total.backward()
            if apply_gradients(self.optimizer, self.params, MAX_GRAD_NORM):  # as the trainer: clip, finite check, step
                self.updater.step()
        return elapsed()

    def dispatched(self, bf16: bool) -> roofline.Dispatched:
        """The ATen operations and host syncs of one step (a pass that is not timed)."""
        return roofline.count_dispatch(lambda: self.timed(bf16), roofline.optimizer_host_tensors(self.optimizer),
                                       self.device)


class RandomActions(TensorDictModuleBase):
    """Uniform random actions for the whole batch (drawn on the data's device)."""

    def __init__(self, num_actions: int) -> None:
        super().__init__()
        self.num_actions, self.in_keys, self.out_keys = num_actions, [keys.PIXELS], [keys.ACTION]

    def forward(self, td: TensorDictBase) -> TensorDictBase:
        return td.set(keys.ACTION, torch.randint(self.num_actions, td.batch_size, device=td.device))


class ImaginationRun:
    """Reset from a 6-frame context then H random steps, by a plain loop or by ``env.rollout``."""

    def __init__(self, models: DeltaIrisModels, variant: str, batch: int, device: torch.device,
                 compile: bool | str = False) -> None:
        self.env = ImaginationEnv(models.tokenizer, models.world_model, sample=True, compile_step=compile)
        self.policy = RandomActions(models.configs.world_model.num_actions)
        self.data = TensorDict({keys.CONTEXT: context(models, batch, device)}, batch_size=[batch])
        self.batch, self.horizon, self.device = batch, HORIZON[variant], device

    @torch.no_grad()
    def loop(self) -> None:
        core, ctx = self.env.core, self.data.get(keys.CONTEXT)
        core.reset(ctx.get(keys.PIXELS), ctx.get(keys.ACTION))
        frame = ctx.get(keys.PIXELS)[:, -1]
        for _ in range(self.horizon):
            action = torch.randint(self.policy.num_actions, (self.batch,), device=self.device)
            frame, _, _ = core(frame, action)

    @torch.no_grad()
    def start(self) -> TensorDictBase:
        """The env reset from the context (the start of ``rollout``)."""
        return self.env.reset(self.data.clone(False)).exclude(keys.CONTEXT)

    @torch.no_grad()
    def rollout(self, start: TensorDictBase | None = None) -> None:
        start = self.start() if start is None else start
        self.env.rollout(self.horizon, self.policy, tensordict=start, auto_reset=False,
                         break_when_any_done=False, return_contiguous=True)

    def timed(self, mode: str, bf16: bool) -> float:
        with stopwatch(self.device) as elapsed, torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            getattr(self, mode)()
        return elapsed()

    def dispatched(self, bf16: bool) -> tuple[roofline.Dispatched, roofline.Dispatched | None]:
        """(the reset, its H steps) of one ``rollout``: ATen operations and host syncs, counted (not timed).
        The steps of a compiled env are not counted (None): TorchDynamo does not run under the counter."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            started = []
            reset = roofline.count_dispatch(lambda: started.append(self.start()), device=self.device)
            if self.env.core.compiled_step is not None:
                return reset, None
            steps = roofline.count_dispatch(lambda: self.rollout(started[0]), device=self.device)
        return reset, steps

    def profiled_ops(self, bf16: bool) -> int:
        """The outermost ops and generated kernels of H steps (``roofline.count_profiled_ops``), eager
        or compiled alike."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            start = self.start()
            return roofline.count_profiled_ops(lambda: self.rollout(start))


def _median_times(fn, warmup: int, repeats: int) -> list[float]:
    times = [fn() for _ in range(warmup + repeats)]
    return times[warmup:]


# The actor-critic step's precisions: all fp32, all under bf16 autocast, and the presets' choice where
# bf16 is native (params.training.imagination_bf16): the imagination env in bf16, the policy and loss fp32.
BF16_IMAGINATION = "fp32+bf16_imagination"


def _ac_precisions(precisions: list[str]) -> list[str]:
    return precisions + ([BF16_IMAGINATION] if {"fp32", "bf16"} <= set(precisions) else [])


def run(variants: list[str], steps: list[str], precisions: list[str], device: torch.device, warmup: int,
        repeats: int, batches: list[int], configs_for, peaks: dict[str, float] | None = None,
        compile: bool | str = False, execution: Execution | None = None) -> list[dict]:
    """Rows for the ``actor_critic`` and ``imagination`` steps; ``configs_for(variant)`` gives the configs;
    ``peaks``: the matmul GFLOP/s per precision (each row gets its GFLOP/s and share of it);
    ``compile``: False, or a ``torch.compile`` mode (True: the default) for the models' convolutional parts
    and the imagination env's whole step (``params.common.compile``; steps named ``<step>+compiled``);
    ``execution``: the memory format and convolution chunks (default: contiguous, whole batches)."""
    suffix = "+compiled" if compile else ""
    execution = execution or Execution()
    rows = []
    for variant in variants:
        torch.manual_seed(0)
        models = configure_execution(DeltaIrisModels(configs_for(variant)).to(device), execution)
        models = compile_models(models, compile)
        layout = dict(memory_format=execution.memory_format, conv_batch_chunk=execution.conv_batch_chunk)
        for precision in _ac_precisions(precisions) if "actor_critic" in steps else []:
            bf16 = precision == "bf16"
            step = ActorCriticStep(models, variant, device, imagination_bf16=precision == BF16_IMAGINATION,
                                   compile=compile)
            seconds = statistics.median(_median_times(lambda: step.timed(bf16), warmup, repeats))
            ref = REFERENCE_AC_SECONDS[variant][int(bf16)]
            row = dict(variant=variant, step="actor_critic" + suffix, precision=precision, **layout,
                       device=str(device), seconds_median=seconds, reference_seconds_cpu=ref)
            if peaks and not compile:  # FLOPs as eager's; TorchDynamo does not run under the counter
                row = roofline.annotate(row, roofline.count_flops(lambda: step.timed(bf16)), seconds,
                                        peaks["bf16" if precision != "fp32" else "fp32"])
            if not compile:  # TorchDynamo does not run under the counter
                row = roofline.annotate_dispatch(row, step.dispatched(bf16))
            rows.append(row)
            print(f"  {variant:8s} actor_critic {precision:5s} {seconds:7.3f} s "
                  f"({reference_note(variant, precision, ref, ' s')}) {roofline.describe_dispatch(row)}; "
                  f"{roofline.describe(row)}", flush=True)
        for precision in precisions:
            bf16 = precision == "bf16"
            if "imagination" not in steps:
                continue
            for batch in batches:
                run_ = ImaginationRun(models, variant, batch, device, compile)
                times = {"loop": [], "rollout": []}
                for i in range(warmup + repeats):  # the two modes take turns, so load hits them alike
                    for mode in times:
                        seconds = run_.timed(mode, bf16)
                        if i >= warmup:
                            times[mode].append(seconds)
                loop, rollout = (statistics.median(times[m]) for m in ("loop", "rollout"))
                n = batch * run_.horizon
                ref = REFERENCE_IMAGINATION_STEPS_PER_S[(variant, precision)].get(batch)
                note = reference_note(variant, precision, ref, " /s")
                row = dict(variant=variant, step="imagination" + suffix, precision=precision, **layout,
                           device=str(device),
                           batch=batch, steps_per_s_loop=n / loop, steps_per_s_rollout=n / rollout,
                           overhead_share=max(rollout - loop, 0.0) / rollout, reference_steps_per_s_cpu=ref)
                if peaks and not compile:  # per imagined step, at the rollout's rate (as eager's when compiled)
                    flops = roofline.count_flops(lambda: run_.timed("loop", bf16)) / n
                    row = roofline.annotate(row, flops, rollout / n, peaks[precision])
                # per imagined step of the whole batch (through env.rollout), and the reset before them
                at_reset, imagined = run_.dispatched(bf16)
                if imagined is not None:
                    row = roofline.annotate_dispatch(row, imagined, per=run_.horizon)
                row = {**row, "reset_ops": at_reset.ops, "reset_syncs": at_reset.num_syncs,
                       "profiled_ops_per_step": run_.profiled_ops(bf16) / run_.horizon}
                rows.append(row)
                print(f"  {variant:8s} imagination  {precision:5s} B={batch:<5d} loop {n / loop:8.1f} /s, "
                      f"rollout {n / rollout:8.1f} /s, overhead {100 * rows[-1]['overhead_share']:4.1f} % "
                      f"({note}) {roofline.describe_dispatch(row)} per step, {row['profiled_ops_per_step']:g} "
                      f"profiled (reset: {at_reset.ops} ops, "
                      f"{at_reset.num_syncs} syncs); {roofline.describe(row)}", flush=True)
    return rows


def reference_note(variant: str, precision: str, value: float | None, unit: str) -> str:
    """The reference's figure, "fails in the reference" (bf16 Crafter) or "not measured" (other batches)."""
    if value is not None:
        return f"reference {value:g}{unit}"
    fails = REFERENCE_AC_SECONDS[variant][int(precision == "bf16")] is None
    return "fails in the reference" if fails else "reference not measured"


def format_table(rows: list[dict]) -> str:
    def ref(r, value):
        note = reference_note(r["variant"], r["precision"], value, "")
        return note.removeprefix("reference ")

    def count(r, key):
        return f"{r[key]:g}" if key in r else ""

    lines = ["| variant | work | precision | ours | reference, Part D | TorchRL/TensorDict overhead "
             "| ATen ops / step | host syncs / step | profiled ops / step | GFLOP/s (share of the matmul peak) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        compiled = ", compiled" if r["step"].endswith("+compiled") else ""
        if r["step"].startswith("actor_critic"):
            unit = " s" if r["reference_seconds_cpu"] else ""
            lines.append(f"| {r['variant']} | actor-critic step{compiled} | {r['precision']} | "
                         f"{r['seconds_median']:.3f} s | {ref(r, r['reference_seconds_cpu'])}{unit} | | "
                         f"{count(r, 'ops_per_step')} | {count(r, 'syncs_per_step')} | | {roofline.describe(r)} |")
        else:
            lines.append(f"| {r['variant']} | imagination B={r['batch']}{compiled} | {r['precision']} | "
                         f"{r['steps_per_s_rollout']:.1f} steps/s (loop {r['steps_per_s_loop']:.1f}) | "
                         f"{ref(r, r['reference_steps_per_s_cpu'])} | {100 * r['overhead_share']:.1f} % | "
                         f"{count(r, 'ops_per_step')} | {count(r, 'syncs_per_step')} | "
                         f"{count(r, 'profiled_ops_per_step')} | {roofline.describe(r)} (per imagined step) |")
    return "\n".join(lines)
