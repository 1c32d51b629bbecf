"""Where a run's config becomes objects, in dependency order, each built once:

- :mod:`~torchrl_deltairis.build.checks`: every check of the config, before any work;
- :mod:`~torchrl_deltairis.build.data`: the training envs, the episode stores, the collectors;
- :mod:`~torchrl_deltairis.build.models`: the three networks;
- :mod:`~torchrl_deltairis.build.components`: each network with its loss, optimizer, segments, schedule;
- :mod:`~torchrl_deltairis.build.evaluate`: test episodes, evaluation losses, media;
- :mod:`~torchrl_deltairis.build.lifecycle`: the run folder, the lock, resume, the random states, and
  :func:`build_trainer`, which puts the parts together in that order.

It reads the Hydra config laid out like the reference's (``env.train``, ``env.test``,
``params.{common,collection,training,evaluation,tokenizer,world_model,actor_critic}``); everything it
builds is a plain object handed to the ``Trainer``.
"""

from torchrl_deltairis.build.lifecycle import build_trainer

__all__ = ["build_trainer"]
