"""The sections of a run's config (``params.common``, ``initialization``, ``collection``, ``training``,
``evaluation`` and the imagination's fields of ``actor_critic``): each field with its meaning and range
where it is declared (:func:`~torchrl_deltairis.checked.setting`), checked by
:func:`~torchrl_deltairis.checked.parse`. :class:`~torchrl_deltairis.config.RunConfig` holds them.
"""

from __future__ import annotations

from dataclasses import dataclass

from torchrl_deltairis.checked import setting
from torchrl_deltairis.modules.models import COMPILE_MODES, MEMORY_FORMATS


@dataclass(frozen=True)
class CommonConfig:
    """``params.common``: the run as a whole."""

    epochs: int = setting(doc="epochs of the run (collection, training, evaluation each epoch)", low=1)
    device: str = setting("auto", doc="auto (a GPU when there is one, else the CPU), cpu, cuda, cuda:N or mps")
    do_checkpoint: bool = setting(True, doc="keep the resumable state (optimizers, counts, random states) "
                                            "beside the weights")
    seed: int = setting(0, doc="seeds every generator of the run (the reference draws it from the clock)")
    deterministic: bool = setting(False, doc="deterministic CUDA kernels: a seed gives a bit-identical GPU run")
    compile: bool | str = setting(False, doc="torch.compile the convolutional parts: false, true or a mode",
                                  choices=COMPILE_MODES)
    memory_format: str = setting("auto", doc="the convolutions' activations", choices=MEMORY_FORMATS)
    conv_batch_chunk: int | str | None = setting("auto", doc="images per convolution call: auto, null (the whole "
                                                             "batch) or a positive int")
    resume: bool | str = setting(False, doc="true: resume from the run folder's checkpoint; auto: if it has one",
                                 choices=(False, True, "auto"))

    def __post_init__(self) -> None:
        chunk = self.conv_batch_chunk
        if chunk != "auto" and chunk is not None and (not isinstance(chunk, int) or chunk < 1):
            raise ValueError(f"params.common.conv_batch_chunk={chunk!r}; expected auto, null or "
                             "a positive int")


@dataclass(frozen=True)
class InitializationConfig:
    """``params.initialization``: weights to start from (a run's checkpoint or the reference's agent)."""

    path_to_checkpoint: str | None = setting(None, doc="a state_dict file (checkpoints/last.pt, state.pt or the "
                                                       "reference's); null: random initialization")
    load_tokenizer: bool = setting(True, doc="load the tokenizer's weights from it")
    load_world_model: bool = setting(True, doc="load the world model's weights from it")
    load_actor_critic: bool = setting(True, doc="load the actor-critic's weights from it")


@dataclass(frozen=True)
class ActingConfig:
    """``params.collection.{train,test}.config``: how the policy acts in the real env."""

    epsilon: float = setting(doc="probability of a uniform random action (train: from epoch 2)", low=0, high=1)
    should_sample: bool = setting(doc="sample the action from the policy (false: its most likely action)")
    temperature: float = setting(doc="the policy's logits are divided by it", low=0, low_open=True)
    burn_in_length: int = setting(doc="frames of the episode so far replayed into the LSTM before acting", low=0)
    num_steps: int | None = setting(None, doc="train: agent steps collected per epoch from epoch 2", low=0)
    num_steps_first_epoch: int | None = setting(None, doc="train: random-policy steps of epoch 1", low=1)
    num_episodes: int | None = setting(None, doc="test: episodes per evaluation", low=1)


@dataclass(frozen=True)
class SplitCollection:
    """``params.collection.{train,test}``."""

    num_envs: int = setting(doc="envs stepped side by side (worker processes)", low=1)
    num_episodes_to_save: int = setting(doc="episodes kept as files under media/episodes", low=0)
    config: ActingConfig = setting(doc="how the policy acts")
    steps_per_batch: int | None = setting(None, doc="train: steps per env in one collector batch", low=1)
    stop_after_epochs: int | None = setting(None, doc="train: the last epoch that collects", low=0)


@dataclass(frozen=True)
class CollectionConfig:
    """``params.collection``."""

    train: SplitCollection = setting(doc="the training episodes")
    test: SplitCollection = setting(doc="the evaluation's test episodes")
    path_to_static_dataset: str | None = setting(None, doc="a run's dataset/ folder to train on without "
                                                           "collecting; null: collect")
    test_capacity: int = setting(2_000_000, doc="the most steps one evaluation may store", low=1)


@dataclass(frozen=True)
class ComponentTraining:
    """``params.training.{tokenizer,world_model,actor_critic}``: one component's updates."""

    sequence_length: int = setting(doc="frames per sampled segment", low=1)
    batch_num_samples: int = setting(doc="segments per batch", low=1)
    grad_acc_steps: int = setting(doc="batches whose gradients add up to one optimizer step", low=1)
    max_grad_norm: float = setting(doc="gradient norm clipping", low=0, low_open=True)
    priority_alpha: float = setting(doc="episodes are drawn with weight 1 / (1 + α·(times drawn) / len)", low=0)
    start_after_epochs: int = setting(doc="trains from epoch start_after_epochs + 1 on", low=0)
    steps_per_epoch: int = setting(doc="optimizer steps per epoch", low=0)
    steps_first_epoch: int | None = setting(None, doc="optimizer steps of epoch 1 (null: steps_per_epoch)", low=0)
    weight_decay: float = setting(0.0, doc="AdamW's weight decay (the actor-critic's Adam has none)", low=0)
    learning_rate: float | None = setting(None, doc="this component's (null: params.training.learning_rate)",
                                          low=0, low_open=True)


@dataclass(frozen=True)
class TrainingConfig:
    """``params.training``."""

    learning_rate: float = setting(doc="the three components' learning rate", low=0, low_open=True)
    tokenizer: ComponentTraining = setting(doc="the tokenizer's updates")
    world_model: ComponentTraining = setting(doc="the world model's updates")
    actor_critic: ComponentTraining = setting(doc="the actor-critic's updates (segments: burn-in + 1 frames)")
    should: bool = setting(True, doc="train (false: collect and evaluate only)")
    bf16: bool = setting(True, doc="bf16 autocast for the tokenizer's and the world model's updates")
    imagination_bf16: bool = setting(False, doc="bf16 autocast for the imagination's convolutions")

    def __post_init__(self) -> None:
        if self.tokenizer.sequence_length < 2:
            raise ValueError(f"params.training.tokenizer.sequence_length={self.tokenizer.sequence_length}; expected "
                             "an integer >= 2 (a frame and the next)")

    def component(self, name: str) -> ComponentTraining:
        return getattr(self, name)

    def learning_rate_key(self, name: str) -> str:
        """The key that sets ``name``'s learning rate (its own when set, else the shared one)."""
        own = self.component(name).learning_rate is not None
        return f"params.training.{name}.learning_rate" if own else "params.training.learning_rate"

    def learning_rate_of(self, name: str) -> float:
        own = self.component(name).learning_rate
        return own if own is not None else self.learning_rate


@dataclass(frozen=True)
class EvaluatedModel:
    """``params.evaluation.{tokenizer,world_model}``: the model's loss over the test episodes."""

    batch_num_samples: int = setting(doc="segments per evaluation batch", low=1)
    start_after_epochs: int = setting(doc="evaluated from epoch start_after_epochs + 1 on", low=0)
    save_reconstructions: bool = setting(False, doc="tokenizer: save an image of reconstructed frames")


@dataclass(frozen=True)
class EvaluationConfig:
    """``params.evaluation``."""

    every: int = setting(doc="evaluate every this many epochs (and after the last)", low=1)
    tokenizer: EvaluatedModel = setting(doc="the tokenizer's evaluation")
    world_model: EvaluatedModel = setting(doc="the world model's evaluation")
    should: bool = setting(True, doc="evaluate at all")


@dataclass(frozen=True)
class ImaginationConfig:
    """``params.actor_critic``'s imagination fields."""

    burn_in_length: int = setting(doc="real frames burned into the LSTM and the world model before imagining", low=0)
    imagination_horizon: int = setting(doc="imagined steps per rollout", low=1)
