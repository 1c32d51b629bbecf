"""The actor-critic's loss slot, built as a run builds it (factory.make_actor_critic_component): named
losses, PPO's real clipped updates, a user's own LossModule chosen by ``_target_``, the off-policy
path (a stock Collector on the imagination env -> a stock replay buffer -> DiscreteSACLoss), set_keys."""

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from tensordict import TensorDict
from torchrl.objectives import LossModule

from torchrl_deltairis import keys
from torchrl_deltairis.data import EpisodeCounts, EpisodeStore
from torchrl_deltairis.build.components import make_actor_critic_component
from torchrl_deltairis.build.models import make_models
from torchrl_deltairis.objectives.actor_critic_loss import ImaginationActorCriticLoss
from torchrl_deltairis.objectives.loss_slot import ActorCriticLossConfig
from torchrl_deltairis.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
NUM_ACTIONS = 2


class UserLoss(LossModule):
    """A user's own loss, declared only here: REINFORCE on the imagined reward-to-go, no critic."""

    def __init__(self, actor_network, *, scale: float = 1.0) -> None:
        super().__init__()
        self.actor_network, self.scale = actor_network, scale

    def forward(self, td):
        td = self.actor_network(td.clone(False).exclude(keys.ACTION_LOG_PROB))
        returns = td.get(keys.NEXT_REWARD)[..., 0].flip(-1).cumsum(-1).flip(-1)
        dist = torch.distributions.Categorical(logits=td.get(keys.LOGITS))
        return TensorDict(loss_user=-(dist.log_prob(td.get(keys.ACTION)) * returns).mean() * self.scale)


def config(*overrides):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("config", overrides=["env=recall", "params=recall", "params.common.device=cpu",
                                            "params.training.actor_critic.batch_num_samples=4", *overrides])


def random_store(tmp_path, episodes=6, length=5, size=32):
    g = torch.Generator().manual_seed(0)
    n = episodes * length
    done = (torch.arange(n) % length == length - 1).view(1, n, 1)
    batch = TensorDict({keys.PIXELS: torch.randint(0, 256, (1, n, 3, size, size), dtype=torch.uint8, generator=g),
                        keys.ACTION: torch.randint(0, NUM_ACTIONS, (1, n), generator=g),
                        keys.NEXT_REWARD: torch.randn(1, n, 1, generator=g), keys.NEXT_TERMINATED: done,
                        keys.NEXT_DONE: done, keys.NEXT_TRUNCATED: torch.zeros_like(done)}, batch_size=[1, n])
    store = EpisodeStore(tmp_path / "store", capacity=2 * n)
    store.add_batch(batch)
    return store


def build(tmp_path, *overrides):
    cfg = config(*overrides)
    torch.manual_seed(0)
    models = make_models(RunConfig.from_hydra(cfg), NUM_ACTIONS, torch.device("cpu"))
    parts = make_actor_critic_component(RunConfig.from_hydra(cfg), models, random_store(tmp_path), EpisodeCounts(), torch.device("cpu"), 0)
    return models, parts


def weights(module):
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


def test_ppo_makes_several_clipped_updates_per_imagined_batch(tmp_path):
    models, parts = build(tmp_path, "params.actor_critic.loss=ppo", "params.training.actor_critic.learning_rate=0.01",
                          "params.actor_critic.updates.epochs=3", "params.actor_critic.updates.num_minibatches=2",
                          "params.training.actor_critic.steps_per_epoch=2")
    seen = []
    parts.component.optimizer.step = wrap(parts.component.optimizer.step, seen)
    metrics = parts.component.train_epoch(2, torch.device("cpu"), progress=False)
    assert len(seen) == 2 * 3 * 2  # imagined batches x epochs x minibatches optimiser steps
    assert metrics["actor_critic/clip_fraction"] > 0  # the ratio leaves [1 - eps, 1 + eps]: clipping acts
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())


def wrap(step, seen):
    def counted(*args, **kwargs):
        seen.append(1)
        return step(*args, **kwargs)
    return counted


def test_a_user_loss_declared_in_a_test_file_trains_by_target(tmp_path):
    models, parts = build(tmp_path, "params.actor_critic.loss={_target_:test_loss_slot.UserLoss,scale:2.0}")
    assert isinstance(parts.loss, UserLoss) and parts.loss.scale == 2.0
    before = weights(models.actor_critic.model)
    metrics = parts.component.train_epoch(2, torch.device("cpu"), progress=False)
    assert "actor_critic/loss_user" in metrics
    assert not torch.equal(before, weights(models.actor_critic.model))


def test_off_policy_sac_collects_imagination_into_a_replay_buffer_and_reduces_its_loss(tmp_path):
    models, parts = build(tmp_path, "params.actor_critic.loss=sac", "params.training.actor_critic.learning_rate=0.003",
                          "params.actor_critic.updates.replay_batch_size=16",
                          "params.actor_critic.updates.num_minibatches=4",
                          "params.training.actor_critic.steps_per_epoch=2")
    component = parts.component
    first = component.train_epoch(2, torch.device("cpu"), progress=False)
    assert "actor_critic/loss_qvalue" in first and "actor_critic/loss_actor" in first
    q_head = parts.loss.qvalue_network_params  # the Q heads are trained too (they are the loss's own)
    assert any(p.requires_grad for p in q_head.values(True, True))
    fixed = next(component.updates(component.sample()))  # one replay sample, scored before and after
    with torch.no_grad():
        before = float(parts.loss(fixed.clone())["loss_qvalue"].mean())
    for _ in range(4):
        component.train_epoch(2, torch.device("cpu"), progress=False)
    with torch.no_grad():
        after = float(parts.loss(fixed.clone())["loss_qvalue"].mean())
    assert after < before, (before, after)


def test_every_target_moves_through_soft_update(tmp_path):
    _, parts = build(tmp_path, "params.actor_critic.loss=sac", "params.actor_critic.target_ema_decay=0.5")
    loss = parts.loss
    assert type(parts.component.after_update.__self__).__name__ == "SoftUpdate"
    with torch.no_grad():
        for p in loss.qvalue_network_params.values(True, True):
            p.add_(1.0)  # the source moves away from its target
    old = loss.target_qvalue_network_params.clone()
    parts.component.after_update()
    expected = old.apply(lambda t, s: 0.5 * t + 0.5 * s, loss.qvalue_network_params)
    diff = loss.target_qvalue_network_params.data - expected
    assert max(float(x.detach().abs().max()) for x in diff.values(True, True)) < 1e-6


def test_unknown_kwarg_of_a_target_is_refused_with_its_name():
    with pytest.raises(ValueError, match=r"params.actor_critic.loss.alpha is not a parameter of DiscreteSACLoss"):
        ActorCriticLossConfig(loss={"_target_": "torchrl.objectives.DiscreteSACLoss", "alpha": 0.1})
    with pytest.raises(ValueError, match="cannot be imported"):
        ActorCriticLossConfig(loss={"_target_": "no.such.Loss"})
    with pytest.raises(ValueError, match="updates.epochs=0"):
        ActorCriticLossConfig(loss="ppo", updates={"epochs": 0})


def test_the_reference_objective_takes_set_keys(tiny_models):
    loss = ImaginationActorCriticLoss(tiny_models.actor_critic)
    loss.set_keys(target_value="my_value", mask="my_mask")
    assert loss.tensor_keys.target_value == "my_value" and loss.tensor_keys.mask == "my_mask"
    assert loss.lambda_returns.tensor_keys.value == "my_value"
    with pytest.raises(ValueError, match="not an accepted tensordict key"):
        loss.set_keys(nope="x")
