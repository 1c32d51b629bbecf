"""Numerical parity with the reference Δ-IRIS code, on a fixture of the ../shared/parity format.

Usage::

    python -m torchrl_deltairis.parity FIXTURE.pt [FIXTURE.pt ...]

Loads the fixture's config and reference-format weights into our models (eval mode), recomputes every
output this project can compute from the fixture's inputs and prints one row per output key: the
maximum absolute error and PASS / FAIL (exact for integer and bool outputs, ``atol = rtol = 1e-4`` for
floats). Keys it cannot compute print ``not run``. The exit status is 0 only if every key passed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
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
from torchrl_deltairis.objectives.actor_critic_loss import ActorCriticLossConfig, ImaginationActorCriticLoss
from torchrl_deltairis.policy import ActorCriticTrunk, make_actor, recurrent_state_spec
from torchrl_deltairis.reference import DeltaIrisModels, configs_from_reference, load_reference_checkpoint

__all__ = ["ParityRow", "compute_outputs", "run_parity", "flatten_outputs", "main"]

ATOL = RTOL = 1e-4
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
    """Nested fixture outputs → ``{"a.b.c": tensor}``; entries ending in ``.inputs`` are inputs, skipped."""
    flat = {}
    for key, value in outputs.items():
        name = f"{prefix}{key}"
        if name.endswith(".inputs"):
            continue
        if isinstance(value, Mapping):
            flat.update(flatten_outputs(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


@torch.no_grad()
def compute_outputs(models: DeltaIrisModels, inputs: Mapping[str, torch.Tensor],
                    fixture_outputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Everything this project can compute of a fixture's outputs, keyed as in the fixture."""
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


def _imagination_outputs(models: DeltaIrisModels, context_obs: torch.Tensor, context_act: torch.Tensor,
                         fixture_outputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """``imagination.*`` (the fixture's actions), ``ac_imagine.*`` and ``actor_critic.losses``: greedy
    world model, the policy under ``ExplorationType.MODE``, values from the EMA target."""
    training = models.configs.actor_critic_training
    state_spec = recurrent_state_spec(models.configs.actor_critic.lstm_dim, device=context_obs.device)
    env = ImaginationEnv(models.tokenizer, models.world_model, sample=False, policy_state_spec=state_spec)
    context = TensorDict({keys.PIXELS: to_uint8_frames(context_obs), keys.ACTION: context_act},
                         batch_size=context_act.shape[:1])
    out: dict[str, torch.Tensor] = {}
    actions = fixture_outputs.get("imagination.actions")
    if actions is not None:
        steps = []
        td = env.reset(context=context)
        for t in range(actions.size(1)):
            td = env.step(td.set(keys.ACTION, actions[:, t]))
            steps.append(td.get("next").clone(False))
            td = env.step_mdp(td)
        nxt = torch.stack(steps, dim=1)
        out["imagination.actions"] = actions
        out["imagination.frames"] = functional.pixels_to_float(nxt.get(keys.PIXELS))
        out["imagination.rewards"] = nxt.get(keys.REWARD)[..., 0]
        out["imagination.dones"] = nxt.get(keys.DONE)[..., 0]
    if "imagination_horizon" not in training:
        return out
    config = ActorCriticLossConfig(gamma=training["gamma"], lambda_=training["lambda_"],
                                   entropy_weight=training["entropy_weight"])
    with set_exploration_type(ExplorationType.MODE):
        rollout = imagine(env, make_actor(models.actor_critic.model), models.actor_critic, context,
                          training["imagination_horizon"])
    with set_recurrent_mode(True):  # the online critic over the imagined frames
        critic = ActorCriticTrunk(models.actor_critic.model)
        value_logits = critic(rollout.clone(False)).get(keys.VALUE_LOGITS)
    out.update({
        "ac_imagine.actions": rollout.get(keys.ACTION), "ac_imagine.logits_actions": rollout.get(keys.LOGITS),
        "ac_imagine.logits_values": value_logits if value_logits.size(-1) > 1 else value_logits[..., 0],
        "ac_imagine.rewards": rollout.get(keys.NEXT_REWARD)[..., 0],
        "ac_imagine.ends": rollout.get(keys.NEXT_TERMINATED)[..., 0].long(),
        "ac_imagine.target_values": rollout.get(keys.TARGET_STATE_VALUE)[..., 0],
        "ac_imagine.value_bootstrap": rollout.get(("next", keys.TARGET_STATE_VALUE))[:, -1, 0]})
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
    rows = []
    for key, value in expected.items():
        if key == _ROUNDED_KEY and key in ours:
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
        passed = sum(r.status == "PASS" for r in rows)
        print(f"== {path}: {passed}/{len(rows)} passed, {sum(r.status == 'FAIL' for r in rows)} failed, "
              f"{sum(r.status == 'not run' for r in rows)} not run")
        print(format_rows(rows))
        all_ok &= passed == len(rows)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
