"""torchrl_deltairis/compat.py: each private corner of TorchRL and Crafter we use still exists and still
does what we rely on. A failure here after an upgrade names the function to rewrite."""

import torch
from conftest import small_models
from tensordict import TensorDict
from torchrl.collectors import Collector
from torchrl.data import LazyMemmapStorage, ReplayBuffer
from torchrl.data.replay_buffers.samplers import RandomSampler
from torchrl.envs import EnvBase
from torchrl.objectives import SoftUpdate

from torchrl_deltairis import compat
from torchrl_deltairis.envs import make_env
from torchrl_deltairis.envs.reach import REACH_ID
from torchrl_deltairis.objectives.actor_critic_loss import ImaginationActorCriticLoss


def _collector() -> tuple[Collector, EnvBase]:
    env = make_env({"id": REACH_ID, "family": "gym", "size": 32, "kwargs": {"grid": 2, "max_steps": 2, "size": 32}})
    collector = Collector(env, None, frames_per_batch=4, total_frames=-1)
    return collector, env


def test_the_collector_takes_what_we_write_into_its_next_step():
    collector, env = _collector()
    try:
        compat.collector_policy_keys_as_list(collector)
        assert not isinstance(getattr(collector, "_policy_output_keys", []), set)
        batch = next(iter(collector))  # the carrier exists once it has collected
        marker = torch.full_like(batch["step_count"][-1], 12345)
        compat.collector_write_next_step(collector, TensorDict({"step_count": marker}, batch.batch_size[:-1]))
        assert collector._carrier["step_count"].eq(12345).all()
    finally:
        collector.shutdown()


def test_a_mapped_storage_takes_a_new_length(tmp_path):
    storage = LazyMemmapStorage(10, scratch_dir=tmp_path)
    buffer = ReplayBuffer(storage=storage)
    buffer.extend(TensorDict({"x": torch.arange(6)}, [6]))
    compat.storage_set_length(storage, 3)
    assert len(storage) == 3 and len(buffer) == 3
    assert storage.get(torch.arange(3))["x"].tolist() == [0, 1, 2]


def test_a_sampler_draws_from_the_generator_its_buffer_gives_it():
    sampler, own = RandomSampler(), torch.Generator()
    assert compat.sampler_generator(sampler, own) is own
    given = torch.Generator()
    ReplayBuffer(storage=LazyMemmapStorage(4), sampler=sampler).set_rng(given)
    assert compat.sampler_generator(sampler, own) is given


def test_soft_update_clears_the_pending_target_mark():
    models = small_models()
    loss = ImaginationActorCriticLoss(models.actor_critic)
    assert loss._has_update_associated == {"actor_critic": False}  # marked by compat in the loss
    SoftUpdate(loss, eps=0.995)
    assert loss._has_update_associated == {"actor_critic": True}


def test_crafter_objects_hash_by_their_creation_order():
    import crafter
    import crafter.objects

    compat.crafter_number_objects()
    compat.crafter_number_objects()  # idempotent
    env = crafter.Env(seed=0)
    env.reset()
    numbers = sorted(hash(obj) for obj in env._world.objects)
    assert numbers == sorted(set(numbers)) and numbers[0] >= 1  # unique creation numbers
    assert all(hash(obj) == obj._object_number for obj in env._world.objects)
