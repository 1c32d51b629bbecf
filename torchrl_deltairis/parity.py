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
from collections.abc import Mapping
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
from torchrl_deltairis.parity_replay import DrawReplay, ReplayedActor, replay_rollout
from torchrl_deltairis.parity_rows import PARTED, ParityRow, compare, compare_rounded, flatten_outputs, format_rows
from torchrl_deltairis.policy import ActorCriticTrunk, make_actor, recurrent_state_spec
from torchrl_deltairis.reference import DeltaIrisModels, configs_from_reference, load_reference_checkpoint


__all__ = ["ParityRow", "compute_outputs", "run_parity", "flatten_outputs", "main"]


_ROUNDED_KEY = "tokenizer.encode_decode"


_UNROUNDED = "tokenizer.encode_decode:unrounded"


_TOKENIZER_LOSS_NAMES = {  # fixture name → our loss key
    "commitment_loss": "loss_commitment", "reconstruction_loss_l1": "loss_reconstruction_l1",
    "reconstruction_loss_l2": "loss_reconstruction_l2",
    "reconstruction_loss_l2_worst_pixel": "loss_reconstruction_l2_worst_pixel",
}


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
    actor = ReplayedActor(make_actor(models.actor_critic.model), draw_fn)
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
