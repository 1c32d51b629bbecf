"""Every use of another library's private corners, in one place.

Each function below reaches into a private attribute of TorchRL, tensordict or Crafter because the
library offers no public way to do what we need; each names the version it was written against, and
``tests/test_compat.py`` checks the attribute still exists and still does what we rely on, so that an
upgrade fails there, loudly, rather than somewhere in a run.

Written against torchrl 0.14.1, tensordict 0.14.3, crafter 1.8.3.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["collector_write_next_step", "collector_policy_keys_as_list", "storage_set_length",
           "sampler_generator", "loss_expects_target_updater", "crafter_number_objects"]


def collector_write_next_step(collector: Any, values: Any) -> None:
    """Writes ``values`` into the step a stock ``torchrl.collectors.Collector`` is about to take (its
    ``_carrier`` TensorDict, on the env's device): e.g. the policy's recurrent state burnt in from stored
    frames before a collection. torchrl 0.14.1 has no public setter for it."""
    collector._carrier.update(values.to(collector.env_device))


def collector_policy_keys_as_list(collector: Any) -> None:
    """torchrl 0.14.1: with a policy that has a spec, the stock collector keeps its policy's output keys
    as a ``set``; when the policy runs on another device than the envs (a GPU run), each step then fails
    in ``TensorDict.update(keys_to_update=<set>)`` ("unravel_key_list(): incompatible function
    arguments"). Its other branches keep a list; so does this (found by tests/test_simulated_device.py)."""
    if isinstance(getattr(collector, "_policy_output_keys", None), set):
        collector._policy_output_keys = sorted(collector._policy_output_keys, key=str)


def storage_set_length(storage: Any, num_rows: int) -> None:
    """Sets a mapped ``LazyMemmapStorage``'s length to ``num_rows`` (its first rows are the valid ones),
    as its ``loads`` does, with the cache invalidation that goes with it; torchrl 0.14.1 has no public
    setter, and ``loads`` on a mapped storage would copy the whole capacity onto itself."""
    storage._len = num_rows
    storage._bump_mutation_revision()


def sampler_generator(sampler: Any, own: torch.Generator) -> torch.Generator:
    """The generator a ``torchrl.data.replay_buffers.Sampler`` should draw from: the one its replay
    buffer gave it (``_rng``, set by ``ReplayBuffer.set_rng``, torchrl 0.14.1), else its own."""
    given = getattr(sampler, "_rng", None)
    return given if given is not None else own


def loss_expects_target_updater(loss: Any, name: str) -> None:
    """Marks the target parameters ``<name>`` of a ``torchrl.objectives.LossModule`` as expecting an
    updater (``_has_update_associated``, torchrl 0.14.1): ``SoftUpdate`` sets it to True when built on
    the loss, and the loss warns on use while it is False."""
    loss._has_update_associated[name] = False


def crafter_number_objects() -> None:
    """Makes Crafter (1.8.3) reproducible under a seed. Its creature balancing despawns
    ``creatures[random.randint(len(creatures))]`` from a list built by iterating a ``set`` of objects,
    whose order follows their default hash, the memory address: two runs with the same seed and the
    same actions part ways mid-episode. Each object gets a hash that counts its creation in its world
    instead (unique, so a set's behaviour is unchanged; only its iteration order becomes reproducible),
    through ``World.add`` and ``Object.__hash__``. Idempotent; the world's dynamics are untouched."""
    import crafter.engine
    import crafter.objects

    if getattr(crafter.engine.World, "_creation_order_hashes", False):
        return
    add = crafter.engine.World.add

    def numbered_add(world, obj):
        world._next_object_number = getattr(world, "_next_object_number", 0) + 1
        obj._object_number = world._next_object_number
        return add(world, obj)

    crafter.engine.World.add = numbered_add
    crafter.objects.Object.__hash__ = lambda obj: obj._object_number
    crafter.engine.World._creation_order_hashes = True
