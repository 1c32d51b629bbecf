"""Evaluation traverses every stored step once; reconstructions are real images of the right layout."""

from pathlib import Path

import numpy as np
import torch
from conftest import add_random_episodes
from hydra import compose, initialize_config_dir
from PIL import Image
from tensordict import TensorDict

import torchrl_deltairis.build.evaluate as run
from torchrl_deltairis.data import EpisodeStore
from torchrl_deltairis.evaluation import evaluate_loss, save_reconstructions, traverse_segments
from torchrl_deltairis.build.models import make_models
from torchrl_deltairis.modules import Tokenizer, TokenizerConfig
from torchrl_deltairis.modules.convnet import FrameCnnConfig
from torchrl_deltairis.objectives import TokenizerLoss
from torchrl_deltairis.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]


def _store(tmp_path, lengths=(5, 12, 3)):
    store = EpisodeStore(tmp_path / "store", capacity=100)
    for i, length in enumerate(lengths):
        ends = torch.zeros(length, 1, dtype=torch.bool)
        ends[-1] = True
        pixels = torch.full((length, 3, 64, 64), 10 * i, dtype=torch.uint8)
        pixels[:, 0, 0, 0] = torch.arange(length, dtype=torch.uint8)
        store.add_batch(TensorDict({"pixels": pixels, "action": torch.arange(length) % 3,
                                    ("next", "reward"): torch.zeros(length, 1), ("next", "terminated"): ends,
                                    ("next", "truncated"): torch.zeros_like(ends)}, [length]))
    return store


def test_traverse_covers_each_step_once_with_right_padding(tmp_path):
    store = _store(tmp_path)
    batches = list(traverse_segments(store, sequence_length=4, batch_size=3))
    windows = torch.cat([b["episode"] * 100 + b["step"] for b in batches])  # [num windows, 4]
    masks = torch.cat([b["mask_padding"] for b in batches])
    assert masks.shape == (2 + 3 + 1, 4)  # ceil(5/4) + ceil(12/4) + ceil(3/4) windows
    real = sorted(windows[masks].tolist())
    assert real == sorted([e * 100 + s for e, n in enumerate((5, 12, 3)) for s in range(n)])
    assert masks[0].tolist() == [True] * 4 and masks[1].tolist() == [True, False, False, False]
    assert not torch.cat([b["pixels"] for b in batches])[~masks].any()  # padding frames are zeros


def _tiny_tokenizer():
    cnn = dict(num_channels=32, mult=[1, 1, 1, 1, 2], down=[1, 0, 1, 1, 0])
    return Tokenizer(TokenizerConfig(num_actions=3, codebook_size=16, codebook_dim=8,
                                     encoder_config=FrameCnnConfig(image_channels=7, latent_dim=8, **cnn),
                                     decoder_config=FrameCnnConfig(image_channels=3, latent_dim=4 + 4 + 8, **cnn),
                                     frame_cnn_config=FrameCnnConfig(image_channels=3, latent_dim=4, **cnn)))


def test_eval_losses_and_reconstruction_image(tmp_path):
    torch.manual_seed(0)
    store, tokenizer = _store(tmp_path), _tiny_tokenizer()
    codebook = tokenizer.quantizer.codebook.clone()
    metrics = evaluate_loss(TokenizerLoss(tokenizer).train(), traverse_segments(store, 4, 3), torch.device("cpu"),
                            prefix="eval/tokenizer/")
    assert metrics["eval/tokenizer/loss_reconstruction_l2"] > 0
    assert torch.equal(tokenizer.quantizer.codebook, codebook)  # evaluation never updates the codebook
    segments = next(traverse_segments(store, 4, 2))
    path = save_reconstructions(tokenizer, segments, tmp_path / "media", epoch=7)
    image = np.asarray(Image.open(path))
    assert path.name == "epoch_0007.png" and image.shape == (2 * 3 * 64, 4 * 64, 3)
    assert np.array_equal(image[:64, :64], segments["pixels"][0, 0].permute(1, 2, 0).numpy())  # real frame
    assert np.array_equal(image[64:128, :64], image[:64, :64])  # the first reconstruction is the true frame


def test_a_run_evaluates_with_the_evaluation_sections_batch_size_and_start(tmp_path, monkeypatch):
    """As the reference's eval_agent: ``params.evaluation.<component>.batch_num_samples`` and
    ``start_after_epochs`` (by default those of training, by interpolation) decide the evaluation,
    the training section only its sequence length."""
    for split in ("train", "test"):
        add_random_episodes(EpisodeStore(tmp_path / "dataset" / split, capacity=100), (7, 5))
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=[
            "env=recall", "params=recall", "params.common.device=cpu",
            f"params.collection.path_to_static_dataset={tmp_path / 'dataset'}",
            "params.evaluation.tokenizer.batch_num_samples=5", "params.evaluation.tokenizer.save_reconstructions=false",
            "params.evaluation.world_model.start_after_epochs=0", "params.training.world_model.start_after_epochs=10",
            "params.evaluation.world_model.batch_num_samples=3"])
    seen = []

    def traverse(store, sequence_length, batch_size):
        seen.append((sequence_length, batch_size))
        return traverse_segments(store, sequence_length, batch_size)

    monkeypatch.setattr(run, "traverse_segments", traverse)
    models = make_models(RunConfig.from_hydra(cfg), 2, torch.device("cpu"))
    evaluate, collector, _ = run.make_evaluate(RunConfig.from_hydra(cfg), tmp_path / "run", models, None, None, torch.device("cpu"), 0)
    assert collector is None
    metrics = evaluate(epoch=cfg.params.evaluation.tokenizer.start_after_epochs + 1)
    training = cfg.params.training  # its batch sizes are not 5 and 3, its world model starts after epoch 10
    assert (training.tokenizer.batch_num_samples, training.world_model.batch_num_samples) != (5, 3)
    assert seen == [(training.tokenizer.sequence_length, 5), (training.world_model.sequence_length, 3)]
    assert {key.split("/")[1] for key in metrics} == {"tokenizer", "world_model"}
