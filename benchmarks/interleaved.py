"""The reference's own modules and ours, in turns, in one process: speed ratios that a shared machine's
changing load cannot skew.

    python benchmarks/interleaved.py --reference /tmp/delta-iris/src --variant atari --json atari.json
    python benchmarks/interleaved.py --reference /tmp/delta-iris/src --variant crafter --rows tokenizer imagination

Running the reference's own benchmark and then ``speed.py`` puts some ten minutes between the two
measurements; on shared virtual machines the speed of a core changes more than that between
the two (the bf16 matmul rate measured at the start of ``speed.py`` has read from 920 to 2,090 GFLOP/s
on the same Xeon). Here each repetition times the reference's step and then ours on the same work, and
the figure reported is the median of the per-repetition ratios (reference time / ours: above 1, we are
faster), with their spread.

The reference is imported from its own ``src/`` (a checkout of vmicheli/delta-iris, e.g. the search
tool's fetch, then ``git clone``); nothing of it is copied. Modules it imports but never uses on these
paths are stood in for: ``gym`` by gymnasium, ``cv2`` (and matplotlib, torchvision if absent) by empty
modules. The work is the reference's measured work, as in ``speed.py``: the shipped config of the variant (num_actions
17 for Crafter, 4 for Atari as the anchor benchmark), synthetic frames and random actions; a training
step is loss, backward, clipping at 10 and the optimizer step; tokenizer 2 × 21 frames, world model
2 × 21 (Crafter) / 2 × 26 (Atari) with the frozen tokenizer's pass inside, actor-critic 4 imagined
trajectories (burn-in 5, horizon 15 / 20) with the EMA update; imagination from a 6-frame context, H
random-action steps at batch B, reset included. Ours runs as the presets do (``memory_format: auto``,
``conv_batch_chunk: auto``); bf16 rows run both under bf16 autocast (the reference's Crafter actor-critic
and imagination fail there: those rows say so). Median of ``--repeats`` after ``--warmup``.
``--compile [MODE]`` times ours with ``params.common.compile: true`` (or MODE, e.g. ``reduce-overhead``:
the models' convolutional parts and the imagination env's whole step through ``torch.compile``; at
least 2 warm-up turns absorb the compilation); the rows' work is named ``<work>+compiled``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import types
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a file: import the sibling scripts as the benchmarks package
    sys.path[0] = str(Path(__file__).resolve().parents[1])
from benchmarks import speed, speed_configs, speed_imagination
from benchmarks.timing import stopwatch
from torchrl_deltairis.modules.models import compile_models, configure_execution, resolve_execution
from torchrl_deltairis.reference import DeltaIrisModels

NUM_ACTIONS = {"crafter": 17, "atari": 4}
ROWS = ("tokenizer", "world_model", "actor_critic", "imagination")


def _stand_ins() -> None:
    """Modules the reference imports at module level but never calls on the timed paths."""
    try:
        importlib.import_module("gym")
    except ImportError:
        sys.modules["gym"] = importlib.import_module("gymnasium")
    for name in ("cv2", "matplotlib", "matplotlib.pyplot", "torchvision"):
        try:
            importlib.import_module(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)


class Reference:
    """The reference's tokenizer, world model, actor-critic and imagination env, built from its config."""

    def __init__(self, src: Path, variant: str, seed: int = 0, device: torch.device = torch.device("cpu")) -> None:
        if not (src / "models" / "world_model.py").is_file():
            raise SystemExit(f"error: --reference {src} is not the reference's src/ folder (no models/world_model.py)")
        _stand_ins()
        sys.path.insert(0, str(src))
        from hydra.utils import instantiate
        from omegaconf import OmegaConf

        # the reference's own modules, from src/, in this order (envs and models import each other)
        data, models, envs, utils = (importlib.import_module(m) for m in ("data", "models", "envs", "utils"))
        for module in (data, models, envs, utils):
            if not Path(module.__file__).resolve().is_relative_to(src):
                raise SystemExit(f"error: {module.__name__} was imported from {module.__file__}, not from {src}")
        ActorCritic, Tokenizer, WorldModel = models.ActorCritic, models.Tokenizer, models.WorldModel
        configure_optimizer = utils.configure_optimizer
        self.Batch, self.SegmentId, self.WorldModelEnv = data.Batch, data.SegmentId, envs.WorldModelEnv
        if not OmegaConf.has_resolver("eval"):
            OmegaConf.register_new_resolver("eval", eval)
        cfg = OmegaConf.create({"params": OmegaConf.load(src.parent / "config" / "params" / f"{variant}.yaml")})
        OmegaConf.resolve(cfg)
        p = cfg.params
        self.num_actions = NUM_ACTIONS[variant]
        p.tokenizer.num_actions = p.world_model.num_actions = p.actor_critic.model.num_actions = self.num_actions
        torch.manual_seed(seed)
        self.device = device
        self.tokenizer = Tokenizer(instantiate(p.tokenizer)).to(device)
        self.world_model = WorldModel(instantiate(p.world_model)).to(device)
        self.actor_critic = ActorCritic(instantiate(p.actor_critic)).to(device)
        lr, tr = p.training.learning_rate, p.training
        self.optimizers = {
            "tokenizer": configure_optimizer(self.tokenizer, lr, tr.tokenizer.weight_decay),
            "world_model": configure_optimizer(self.world_model, lr, tr.world_model.weight_decay),
            "actor_critic": torch.optim.Adam(self.actor_critic.parameters(), lr=lr)}
        self.lengths = {"tokenizer": tr.tokenizer.sequence_length, "world_model": tr.world_model.sequence_length,
                        "actor_critic": tr.actor_critic.sequence_length}
        self.horizon, self.burn_in = p.actor_critic.imagination_horizon, p.actor_critic.burn_in_length
        self.seed = seed

    def batch(self, b: int, t: int):
        g = torch.Generator().manual_seed(self.seed)
        obs = torch.randint(0, 256, (b, t, 3, 64, 64), generator=g, dtype=torch.uint8).float().div(255)
        act = torch.randint(0, self.num_actions, (b, t), generator=g)
        rew = (torch.rand(b, t, generator=g) < 0.05).float()
        d = self.device
        return self.Batch(obs.to(d), act.to(d), rew.to(d), torch.zeros(b, t, dtype=torch.long, device=d),
                          torch.ones(b, t, dtype=torch.bool, device=d), [self.SegmentId(i, 0, t) for i in range(b)])

    def training_step(self, component: str, batch_size: int):
        """A function that times one training step of ``component`` under bf16 autocast or not."""
        module = getattr(self, component)
        kwargs = {"world_model": dict(tokenizer=self.tokenizer),
                  "actor_critic": dict(tokenizer=self.tokenizer, world_model=self.world_model)}.get(component, {})
        data, optimizer = self.batch(batch_size, self.lengths[component]), self.optimizers[component]
        for other in ("tokenizer", "world_model", "actor_critic"):
            getattr(self, other).train(other == component)

        def timed(bf16: bool) -> float:
            with stopwatch(self.device) as elapsed:
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
                    losses, _ = module.compute_loss(data, **kwargs)
                losses.loss_total.backward()
                torch.nn.utils.clip_grad_norm_(module.parameters(), 10.0)
                optimizer.step()
                optimizer.zero_grad()
            return elapsed()
        return timed

    def imagination(self, batch_size: int):
        """A function that times a reset from a 6-frame context and H random-action steps."""
        self.tokenizer.eval(), self.world_model.eval()
        context = self.batch(batch_size, self.burn_in + 1)
        env = self.WorldModelEnv(self.tokenizer, self.world_model, self.device)
        actions = torch.randint(0, self.num_actions, (self.horizon, batch_size, 1),
                                generator=torch.Generator().manual_seed(self.seed)).to(self.device)

        def timed(bf16: bool) -> float:
            with stopwatch(self.device) as elapsed, torch.no_grad(), \
                    torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
                env.reset_from_past(context.observations, context.actions[:, :-1])
                for t in range(self.horizon):
                    env.step(actions[t])
            return elapsed()
        return timed


class Ours:
    """Our steps on the same work, as speed.py builds them, in the presets' execution (auto)."""

    def __init__(self, variant: str, compile: bool | str = False, device: torch.device = torch.device("cpu")) -> None:
        self.variant, self.device, self.compile = variant, device, compile
        self.configs = speed_configs.configs_for(variant)
        self.execution = resolve_execution(self.device)
        torch.manual_seed(0)
        self.models = compile_models(configure_execution(DeltaIrisModels(self.configs).to(device), self.execution),
                                     compile)

    def training_step(self, component: str):
        if component == "actor_critic":
            step = speed_imagination.ActorCriticStep(self.models, self.variant, self.device, compile=self.compile)
        else:
            step = speed.TrainingStep(self.configs, self.variant, component, self.execution.memory_format,
                                      self.device, compile=self.compile,
                                      conv_batch_chunk=self.execution.conv_batch_chunk)
        return step.timed

    def imagination(self, batch_size: int):
        run = speed_imagination.ImaginationRun(self.models, self.variant, batch_size, self.device, self.compile)
        return lambda bf16: run.timed("rollout", bf16)


def interleave(ref_timed, our_timed, bf16: bool, warmup: int, repeats: int) -> dict:
    """Both in turns: the median of each, and of the per-repetition ratios with their range. Where the
    reference fails in bf16 (Crafter's actor-critic and imagination), its fp32 takes its turns instead
    (ours in bf16 against its fp32), and the row says why."""
    failure = None
    if bf16:  # a first turn of the reference alone, as a check (and one more warm-up when it runs)
        try:
            ref_timed(True)
        except Exception as err:  # report, do not hide
            failure = f"{type(err).__name__}: {err}"[:120]
    ref_times, our_times = [], []
    for i in range(warmup + repeats):
        ref, ours = ref_timed(bf16 and failure is None), our_timed(bf16)
        if i >= warmup:
            ref_times.append(ref), our_times.append(ours)
    ratios = [r / o for r, o in zip(ref_times, our_times)]
    row = dict(ours_seconds=statistics.median(our_times), ours_all=our_times,
               reference_seconds=statistics.median(ref_times), reference_all=ref_times,
               speedup=statistics.median(ratios), speedup_min=min(ratios), speedup_max=max(ratios))
    return {**row, "reference_failed": failure} if failure else row


def describe(row: dict) -> str:
    work = row["work"] + (f" B={row['batch']}" if "batch" in row else "")
    note = f" (its bf16 fails: {row['reference_failed']}; its fp32)" if "reference_failed" in row else ""
    return (f"| {row['variant']} | {work} | {row['precision']} | {row['reference_seconds']:.3f} s{note} | "
            f"{row['ours_seconds']:.3f} s | {row['speedup']:.2f}× ({row['speedup_min']:.2f}–{row['speedup_max']:.2f}) |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, required=True, help="the reference's src/ folder")
    parser.add_argument("--variant", default="atari", choices=["crafter", "atari"])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--batches", nargs="+", type=int, default=[16, 64], help="imagination batch sizes")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (the reference was measured with 2)")
    parser.add_argument("--compile", nargs="?", const=True, default=False, metavar="MODE",
                        help="ours with params.common.compile=true (or =MODE, e.g. reduce-overhead: CUDA graphs): "
                             "the convolutional parts and the imagination env's step (rows <work>+compiled; "
                             "warm-up at least 2)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda: both run there (benchmarks/gpu_check.sh)")
    parser.add_argument("--json", type=Path, default=None, help="write the rows as JSON to this path")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.compile:
        args.warmup = max(args.warmup, 2)  # the first turns compile (a second grad or train mode recompiles)
    torch.set_num_threads(args.threads)
    reference = Reference(args.reference.resolve(), args.variant, device=device)
    ours = Ours(args.variant, args.compile, device)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown") if Path("/proc/cpuinfo").exists() else "unknown"
    if device.type == "cuda":
        cpu = f"{torch.cuda.get_device_name(device)} (host CPU {cpu})"
    print(f"{args.variant}: the reference ({args.reference}) and ours in turns on {device}, {args.threads} threads, "
          f"torch {torch.__version__}, CPU {cpu}; ratio = reference time / ours (median over repetitions, range)",
          flush=True)
    print("| variant | work | precision | reference | ours | reference / ours |\n|---|---|---|---|---|---|", flush=True)
    rows = []
    for work in args.rows:
        for precision in args.precisions:
            bf16 = precision == "bf16"
            if work == "imagination":
                cases = [(dict(batch=b), reference.imagination(b), ours.imagination(b)) for b in args.batches]
            else:
                batch = 4 if work == "actor_critic" else 2
                cases = [({}, reference.training_step(work, batch), ours.training_step(work))]
            for extra, ref_timed, our_timed in cases:
                row = dict(variant=args.variant, work=work + ("+compiled" if args.compile else ""),
                           precision=precision, **extra,
                           **interleave(ref_timed, our_timed, bf16, args.warmup, args.repeats))
                if work == "imagination":  # imagined steps per second, reset included
                    n = row["batch"] * reference.horizon
                    row["ours_steps_per_s"] = n / row["ours_seconds"]
                    if "reference_seconds" in row:
                        row["reference_steps_per_s"] = n / row["reference_seconds"]
                rows.append(row)
                print(describe(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu, "torch": torch.__version__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
