"""The play tool: every mode driven headless through pygame with scripted key presses, on a
run folder (built here without training) and on reference-format checkpoints; the pure parts alone.

Screenshots land in each test's ``tmp_path`` (``<mode>.png``); run with ``--basetemp DIR`` to keep them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image
from tensordict import TensorDict

from torchrl_deltairis import keys
from torchrl_deltairis.data import EpisodeStore
from torchrl_deltairis.build.models import make_models
from torchrl_deltairis.play import main
from torchrl_deltairis.play import recording as play_recording
from torchrl_deltairis.play import sources as play_sources
from torchrl_deltairis.play.dream import SlidingImaginationCore
from torchrl_deltairis.play.keymaps import atari_keymap, crafter_keymap, digit_keymap
from torchrl_deltairis.config_resolvers import arithmetic
from torchrl_deltairis.play.loading import CONFIGS_DIR, env_from_name, read_params
from torchrl_deltairis.play.render import TEXT_COLOUR, compose as compose_frame, header_height
from torchrl_deltairis.play.sources import View
from torchrl_deltairis.reference import load_reference_checkpoint, to_reference_state_dict
from torchrl_deltairis.config import RunConfig

pytest.importorskip("pygame")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
SIZE = 256  # window width of the tests: one header column, 144 px of header
FAST = ["-h", "--fps", "1000", "--size", str(SIZE), "--seed", "0"]
TRAIN_LENGTHS, TEST_LENGTHS = (5, 4, 6), (3, 4)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Batch-of-one inference on tiny models gains nothing from a second thread, and on a busy machine
    OpenMP's spinning threads make it several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def headless(monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")


def colour(split: str, episode: int, t: int) -> tuple[int, int, int]:
    """The uniform colour of stored frame ``t`` of ``episode``: the replay test reads it back."""
    return (40 * episode + 10 * t) % 256, 100 if split == "train" else 200, 7


def fill_store(directory: Path, split: str, lengths: tuple[int, ...]) -> None:
    """One env row of consecutive episodes whose frames are uniform colours."""
    frames, done = [], []
    for episode, length in enumerate(lengths):
        for t in range(length):
            rgb = torch.tensor(colour(split, episode, t), dtype=torch.uint8)
            frames.append(rgb.view(3, 1, 1).expand(3, 64, 64))
            done.append(t == length - 1)
    n = len(frames)
    done = torch.tensor(done).view(1, n, 1)
    batch = TensorDict({keys.PIXELS: torch.stack(frames).unsqueeze(0),
                        keys.ACTION: torch.arange(n).remainder(17).view(1, n),
                        keys.NEXT_REWARD: torch.ones(1, n, 1), keys.NEXT_TERMINATED: done,
                        keys.NEXT_DONE: done, keys.NEXT_TRUNCATED: torch.zeros_like(done)}, batch_size=[1, n])
    EpisodeStore(directory, capacity=64).add_batch(batch)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A smoke-config run folder as a run lays it out, untrained: config, last.pt, two stores."""
    run = tmp_path_factory.mktemp("run")
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=["params=smoke"])
    (run / "config").mkdir()
    OmegaConf.save(cfg, run / "config" / "trainer.yaml", resolve=True)
    torch.manual_seed(0)
    models = make_models(RunConfig.from_hydra(cfg), 17, torch.device("cpu"))
    with torch.no_grad():  # dreams never end by themselves: the scripted steps stay in one episode
        models.world_model.head_ends.head_module[-1].bias.copy_(torch.tensor([20.0, -20.0]))
    (run / "checkpoints").mkdir()
    torch.save(to_reference_state_dict(models), run / "checkpoints" / "last.pt")
    fill_store(run / "dataset" / "train", "train", TRAIN_LENGTHS)
    fill_store(run / "dataset" / "test", "test", TEST_LENGTHS)
    return run


def read_screenshot(path: Path) -> np.ndarray:
    """The saved window, checked: not blank, and the header holds text-coloured pixels."""
    image = np.asarray(Image.open(path).convert("RGB"))
    top = header_height(SIZE)
    assert image.shape == (top + SIZE, SIZE, 3)
    assert image[top:].std() > 0 or image[top:].max() > 0, "the game area is blank"
    inside = image[2:top - 2, 2:SIZE - 2]  # the header without its white outline
    text = (inside == np.array(TEXT_COLOUR, dtype=np.uint8)).all(-1).sum()
    assert text > 100, f"no header text: {text} text-coloured pixels"
    return image


def play(argv: list[str], script: dict[int, list[str]] | None = None) -> int:
    return main([str(a) for a in argv], key_script=script)


# ------------------------------------------------------------------ pure parts
def test_compose_puts_the_header_above_the_scaled_frame():
    frame = np.zeros((64, 64, 3), dtype=np.uint8)
    frame[:32] = (255, 0, 0)
    view = View(frame, "agent in env", 3, "noop", 0.5, 1.5, -0.2, "n/a")
    image = compose_frame(view, SIZE, header=True, paused=True)
    top = header_height(SIZE)
    assert image.shape == (top + SIZE, SIZE, 3) and image.dtype == np.uint8 and top % 16 == 0
    assert (image[top, 0] == (255, 0, 0)).all() and (image[-1, -1] == 0).all()
    assert (image[2:top - 2, 2:-2] == TEXT_COLOUR).all(-1).sum() > 100
    assert compose_frame(view, SIZE, header=False).shape == (SIZE, SIZE, 3)


def test_keymaps():
    crafter = crafter_keymap()
    assert crafter.action_names[0] == "noop" and len(crafter.action_names) == 17
    assert crafter.action_names[crafter.keys["space"]] == "do"
    assert crafter.action_names[crafter.keys["6"]] == "make_iron_sword"
    pong = atari_keymap(["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"])
    assert pong.keys == {"space": 1, "d": 2, "a": 3, "right": 4, "left": 5}  # only the game's legal actions
    assert pong.action_of(["w", "a", "q"]) == 3 and pong.action_of(["q"]) is None
    assert digit_keymap(3).keys == {"0": 0, "1": 1, "2": 2}


def test_sliding_memory_keeps_the_last_steps_and_matches_an_uncached_forward():
    fixture = torch.load(DATA / "crafter_small.pt", weights_only=True)
    models = load_reference_checkpoint(fixture, fixture["config"]).eval()
    wm = models.world_model
    core = SlidingImaginationCore(models.tokenizer, wm, sample=False)
    max_blocks = wm.config.transformer_config.max_blocks
    frame = fixture["inputs"]["observations"][0, :1]  # [1, 3, 64, 64] in [0, 1]
    core.reset(frame[:, None], torch.zeros(1, 0, dtype=torch.int64))
    frame = (frame * 255).round().to(torch.uint8)
    for step in range(max_blocks + 2):
        action = torch.tensor([step % 17])
        if step == max_blocks + 1:  # the last step, checked against the transformer without cache
            context = torch.cat((core._history, core._tail), dim=1)
            context = context[:, -(core.window_blocks * core.block + 1):]  # what the slide keeps
            with torch.no_grad():
                out = wm.transformer(torch.cat((context, wm.act_emb(action[:, None])), dim=1))[:, -1]
            expected = wm.head_ends.head_module(out).softmax(-1)[:, 1]
        frame, _, _ = core(frame, action)
        assert core.cache.size <= core.cache.max_tokens
    assert core.num_slides == 2  # the cache is full after max_blocks steps, then slides at every step
    assert core.context_steps == max_blocks  # the reference's flush would have kept none
    torch.testing.assert_close(core.end_probability, expected, atol=1e-5, rtol=1e-5)


def test_params_yamls_of_the_project_and_of_the_reference(tmp_path):
    atari = read_params(CONFIGS_DIR / "params" / "atari.yaml", env_from_name("Breakout"))  # Hydra defaults
    assert atari["world_model"]["two_hot_rews"] is False
    assert atari["world_model"]["transformer_config"]["max_blocks"] == 26
    (tmp_path / "ref.yaml").write_text("tokenizer: {image_channels: 3, encoder_config: "
                                       "{image_channels: \"${eval:'${..image_channels} * 2 + 1'}\"}}\n")
    assert read_params(tmp_path / "ref.yaml", env_from_name("crafter"))["tokenizer"]["encoder_config"] == \
        {"image_channels": 7}
    with pytest.raises(ValueError, match="only arithmetic"):
        arithmetic("__import__('os').getcwd()")


# ------------------------------------------------------------------ the modes, on a run folder
def test_agent_in_env(run_dir, tmp_path):
    shot = tmp_path / "agent_in_env.png"
    assert play([run_dir, *FAST, "--max-steps", 4, "--screenshot", shot]) == 0
    read_screenshot(shot)


def test_user_in_world_model_keys_reach_the_dream(run_dir, tmp_path, monkeypatch):
    actions = []
    step = play_sources.DreamWorld.step

    def spy(self, action):
        actions.append(action)
        return step(self, action)

    monkeypatch.setattr(play_sources.DreamWorld, "step", spy)
    shot, gif = tmp_path / "play_in_world_model.png", tmp_path / "dream.gif"
    script = {0: ["d"], 1: ["."], 3: ["."], 4: ["space"]}  # move right, pause, resume, do
    assert play([run_dir, "-w", *FAST, "--max-steps", 6, "--screenshot", shot, "--record", gif], script) == 0
    read_screenshot(shot)
    names = crafter_keymap().action_names
    assert names[actions[0]] == "move_right" and names[actions[-2]] == "do"
    assert len(actions) == 4  # ticks 1 and 2 were paused (or the episode was reset instead)
    assert Image.open(gif).n_frames == 5  # the first frame and the 4 unpaused ticks


def test_agent_in_world_model_and_a_clip(run_dir, tmp_path):
    shot = tmp_path / "agent_in_world_model.png"
    assert play([run_dir, "-a", *FAST, "--max-steps", 5, "--screenshot", shot], {1: [","], 3: [","]}) == 0
    read_screenshot(shot)
    clips = list((run_dir / "media" / "recordings").iterdir())
    assert len(clips) == 1 and clips[0].suffix in (".gif", ".mp4")


def test_episode_replay_browses_with_keys(run_dir, tmp_path):
    shot = tmp_path / "episode_replay.png"
    # train episodes; next episode; two frames on; +10 (clamped to the last frame); one back
    script = {0: ["t"], 1: ["up"], 2: ["right"], 3: ["right"], 4: ["page up"], 5: ["left"]}
    assert play([run_dir, "-e", *FAST, "--max-steps", 7, "--screenshot", shot], script) == 0
    image = read_screenshot(shot)
    expected = colour("train", 1, TRAIN_LENGTHS[1] - 2)
    assert tuple(image[header_height(SIZE) + SIZE // 2, SIZE // 2]) == expected


# ------------------------------------------------------------------ reference-format checkpoints
@pytest.fixture(scope="module")
def bare_checkpoint(tmp_path_factory) -> tuple[Path, Path]:
    """crafter_small's weights as a bare state_dict (as the reference saves last.pt; its end head made
    to never fire, so the scripted steps stay in one dream) and its config as a reference-format params
    YAML with one of the reference's ``${eval:...}`` values."""
    folder = tmp_path_factory.mktemp("reference")
    fixture = torch.load(DATA / "crafter_small.pt", weights_only=True)
    state_dict = dict(fixture["state_dict"])
    state_dict["world_model.head_ends.head_module.2.bias"] = torch.tensor([20.0, -20.0])
    torch.save(state_dict, folder / "last.pt")
    config = OmegaConf.create(fixture["config"])
    config.tokenizer.encoder_config.image_channels = "${eval:'${..image_channels} * 2 + 1'}"
    OmegaConf.save(config, folder / "params.yaml")
    return folder / "last.pt", folder / "params.yaml"


def test_reference_checkpoint_with_a_params_yaml(bare_checkpoint, tmp_path, monkeypatch):
    actions = []
    step = play_sources.DreamWorld.step
    monkeypatch.setattr(play_sources.DreamWorld, "step", lambda self, a: actions.append(a) or step(self, a))
    weights, params = bare_checkpoint
    shot = tmp_path / "reference_play_in_world_model.png"
    argv = [weights, "-w", "--params", params, "--env", "crafter", *FAST, "--max-steps", 3,
            "--screenshot", shot]
    assert play(argv, {0: ["w"], 2: ["tab"]}) == 0
    read_screenshot(shot)
    assert [crafter_keymap().action_names[a] for a in actions] == ["move_up", "noop", "sleep"]


@pytest.mark.parametrize("mode", ["", "-w", "-a"])
def test_atari_fixture_checkpoint(tmp_path, mode):
    """A parity fixture file carries its own config; Pong has the fixture's 6 actions."""
    shot = tmp_path / f"atari_{mode.strip('-') or 'agent_in_env'}.png"
    argv = [DATA / "atari_small.pt", *([mode] if mode else []), "--env", "Pong", *FAST, "--max-steps", 3,
            "--screenshot", shot]
    assert play(argv, {0: ["space"]}) == 0
    read_screenshot(shot)


# ------------------------------------------------------------------ clear errors
def test_missing_pygame_says_how_to_install(run_dir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pygame", None)  # `import pygame` raises ImportError
    assert play([run_dir, "--max-steps", 1]) == 2
    assert 'pip install -e ".[play]"' in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["{ckpt}", "--env", "NotAGame"], "--env 'NotAGame' is not crafter"),
    (["{ckpt}", "--env", "Breakout"], "pass --env with a game of 6 actions"),
    (["{run}", "--env", "crafter"], "a run folder has its own config"),
    (["{run}", "--record", "out.avi"], "expected a file ending in .gif or .mp4"),
    (["{missing}"], "does not exist; expected a run folder or a checkpoint file"),
    (["{ckpt}", "-e", "--env", "Pong"], "-e browses a run folder's saved episodes"),
])  # fmt: skip
def test_bad_values_are_named(run_dir, tmp_path, capsys, argv, message):
    paths = {"ckpt": DATA / "atari_small.pt", "run": run_dir, "missing": tmp_path / "nothing"}
    argv = [a.format(**paths) for a in argv]
    assert play([*argv, "--max-steps", 1]) == 2
    assert message in capsys.readouterr().err


def test_mp4_without_an_encoder_says_what_to_install(run_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(play_recording, "mp4_backend", lambda: None)
    assert play([run_dir, "--record", tmp_path / "out.mp4", "--max-steps", 1]) == 2
    assert "pip install imageio imageio-ffmpeg" in capsys.readouterr().err


def test_without_a_display_the_message_says_how_to_run_headless(run_dir, monkeypatch, capsys):
    monkeypatch.setenv("SDL_VIDEODRIVER", "no_such_driver")
    assert play([run_dir, "--max-steps", 1]) == 2
    assert "SDL_VIDEODRIVER=dummy" in capsys.readouterr().err
