"""A run's evaluation: test episodes with the current policy, the model losses over them, the media.
"""

from __future__ import annotations

from pathlib import Path

import torch

from torchrl_deltairis import keys
from torchrl_deltairis.build.data import make_collector
from torchrl_deltairis.config import RunConfig
from torchrl_deltairis.data import EpisodeStore
from torchrl_deltairis.envs import AtariConfig, make_batched_env
from torchrl_deltairis.envs.atari import human_normalized_score
from torchrl_deltairis.evaluation import evaluate_loss, save_reconstructions, traverse_segments
from torchrl_deltairis.media import EpisodeSaver, episodes_video, imagination_video
from torchrl_deltairis.objectives import TokenizerLoss, WorldModelLoss
from torchrl_deltairis.policy import ActorCriticTrunk
from torchrl_deltairis.reference import DeltaIrisModels


def make_evaluate(run: RunConfig, run_dir: Path, models: DeltaIrisModels, trunk: ActorCriticTrunk, imagine_segments,
                  device: torch.device, seed: int):
    """Test episodes with the current policy (epsilon 0, sampling), then the tokenizer and world-model
    losses over them and a reconstruction image, as the reference's evaluation; plus the media: the
    recent and best test episodes, a video of the first test episodes and one of imagined rollouts.

    Returns ``evaluate(epoch) -> metrics``, the test collector and the test store (which holds the
    latest evaluation's test episodes, cleared by each call: ``store.returns()`` are their returns).
    On a static dataset the test store is the dataset's, neither cleared nor recollected (no
    collector, no returns), as the reference."""

    test = run.collection.test
    static = run.static_dataset
    collector = None
    if static is not None:
        store = EpisodeStore(static / "test")
    else:
        env = make_batched_env(run.env_test, test.num_envs, seed=seed + 10_000)
        store = EpisodeStore(run_dir / "dataset" / "test", capacity=run.collection.test_capacity)
        collector = make_collector(env, trunk, store, test, steps_per_batch=run.collection.train.steps_per_batch,
                                   device=device, epsilon=test.config.epsilon)
    training = run.training
    losses = {"tokenizer": TokenizerLoss(models.tokenizer, models.configs.tokenizer_loss),
              "world_model": WorldModelLoss(models.world_model, models.tokenizer, models.configs.world_model_loss)}

    media = run_dir / "media"
    saver = EpisodeSaver(media / "episodes" / "test", store, test.num_episodes_to_save)
    burn_in = run.imagination.burn_in_length
    atari = isinstance(run.env_test, AtariConfig)

    def evaluate(epoch: int) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if collector is not None:
            store.clear()
            saver.reset_seen()
            stats = collector.collect_episodes(test.config.num_episodes)
            metrics.update(stats.summary("collection/test/"))
            if atari and stats.returns:
                metrics["collection/test/human_normalized_score"] = human_normalized_score(
                    run.env_test.id, metrics["collection/test/return_mean"])
            saver.update(epoch)
            episodes_video(store, media / "videos" / f"epoch_{epoch:04d}_test.gif")
        for name, loss in losses.items():  # as the reference: evaluation's batch size and start, training's length
            e = getattr(run.evaluation, name)
            if epoch > e.start_after_epochs:
                batches = traverse_segments(store, training.component(name).sequence_length, e.batch_num_samples)
                metrics.update(evaluate_loss(loss, batches, device, prefix=f"eval/{name}/"))
        if store.num_steps == 0:
            return metrics
        if run.evaluation.tokenizer.save_reconstructions and epoch > training.tokenizer.start_after_epochs:
            segments = next(traverse_segments(store, training.tokenizer.sequence_length, 8))
            save_reconstructions(models.tokenizer, segments.to(device), media / "reconstructions", epoch)
        if epoch > training.world_model.start_after_epochs:  # the policy imagines from the first test frames
            with torch.no_grad():
                segments = next(traverse_segments(store, burn_in + 1, 8)).to(device)
                rollout = imagine_segments(segments)
            imagination_video(segments.get(keys.PIXELS), rollout.get(keys.NEXT_PIXELS),
                              rollout.get(keys.NEXT_TERMINATED)[..., 0],
                              media / "videos" / f"epoch_{epoch:04d}_imagination.gif")
        return metrics

    return evaluate, collector, store
