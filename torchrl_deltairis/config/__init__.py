"""A run's config, typed and checked once (:class:`RunConfig`, ``RunConfig.from_hydra(cfg)``): the sections
(:mod:`~torchrl_deltairis.config.sections`) and the whole run (:mod:`~torchrl_deltairis.config.run`).
``python -m torchrl_deltairis.config`` prints every key with its type, default, range and meaning
(``docs/config.md``).
"""

from torchrl_deltairis.config.run import RunConfig, reference_table, resolve_device
from torchrl_deltairis.config.sections import (
    ActingConfig,
    CollectionConfig,
    CommonConfig,
    ComponentTraining,
    EvaluatedModel,
    EvaluationConfig,
    ImaginationConfig,
    InitializationConfig,
    SplitCollection,
    TrainingConfig,
)

__all__ = [
    "ActingConfig", "CollectionConfig", "CommonConfig", "ComponentTraining", "EvaluatedModel", "EvaluationConfig",
    "ImaginationConfig", "InitializationConfig", "RunConfig", "SplitCollection", "TrainingConfig",
    "reference_table", "resolve_device",
]
