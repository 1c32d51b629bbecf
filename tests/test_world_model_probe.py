"""benchmarks/world_model_probe.py: the windows it reads, and what its three probes report of a tokenizer, an
imagination and a reward head whose answers are known."""

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from tensordict import TensorDict

from benchmarks import tokenizer_offline, world_model_probe
from conftest import small_models
from torchrl_deltairis import keys
from torchrl_deltairis.build.models import initialize_models, make_models
from torchrl_deltairis.config import RunConfig
from torchrl_deltairis.config.sections import InitializationConfig
from torchrl_deltairis.data import EpisodeStore
from torchrl_deltairis.reference import to_reference_state_dict

ROOT = Path(__file__).resolve().parents[1]

LENGTH = 4  # steps per window (the small fixtures' world models hold 8 blocks)


class Episodes:
    """A store-like list of episodes (``len`` and ``episode(i)``, as play's StoredEpisodes) whose
    rewards are given; frames are random 64x64, actions count up modulo 6."""

    def __init__(self, rewards: list[list[float]], seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.episodes = [TensorDict({keys.PIXELS: torch.randint(0, 256, (len(r), 3, 64, 64), dtype=torch.uint8,
                                                                generator=g),
                                     keys.ACTION: torch.arange(len(r)) % 6,
                                     keys.REWARD: torch.tensor(r)}, [len(r)]) for r in rewards]

    def __len__(self) -> int:
        return len(self.episodes)

    def episode(self, index: int) -> TensorDict:
        return self.episodes[index]


def test_windows_lie_inside_one_episode_and_end_on_their_kind_of_step():
    store = Episodes([[0, 0, 0, 1, 0, 0, 1], [0, 1, 0], [0, 0, 0, 0, 0, -1, 0]])
    found = world_model_probe.windows_of(store, LENGTH, count=10)
    # windows end at steps 3 to 6 of episodes 0 and 2 (episode 1 is too short): (0, 3), (0, 6) and (2, 5)
    # paid, (0, 4), (0, 5), (2, 3), (2, 4) and (2, 6) did not
    assert len(found["rewarded"]) == 3 and len(found["unrewarded"]) == 5
    for kind, windows in found.items():
        for w in windows:
            assert w.batch_size == torch.Size([LENGTH])
            assert (w.get(keys.REWARD)[-1] != 0) == (kind == "rewarded")
    assert len(world_model_probe.windows_of(store, LENGTH, count=2)["unrewarded"]) == 2
    assert len(world_model_probe.windows_of(store, LENGTH, count=10, by_reward=False)["all"]) == 8


class Copier:
    """A stand-in tokenizer whose reconstruction is the previous frame (``copy``) or the true next one."""

    def __init__(self, copy: bool) -> None:
        self.copy = copy

    def encode_decode(self, x1, a, x2):
        return x1.clone() if self.copy else x2.clone()


def test_reconstruction_errors_weigh_the_pixels_that_changed():
    windows = world_model_probe.windows_of(Episodes([[0] * 6]), 3, count=4, by_reward=False)["all"]
    assert world_model_probe.reconstruction_errors(Copier(copy=False), windows) == (0.0, 0.0)
    whole, changed = world_model_probe.reconstruction_errors(Copier(copy=True), windows)
    frames = torch.stack([w.get(keys.PIXELS) for w in windows]).float() / 255
    diff = (frames[:, 1:] - frames[:, :-1]).abs()
    assert whole == pytest.approx(diff.mean().item(), rel=1e-5)
    assert changed > whole  # random frames: most pixels changed, and those carry the whole error


class ActionCore:
    """A stand-in imagination: the next frame is the current one plus 1, the reward 1 for action 4."""

    def reset(self, frames, actions):
        self.context = (frames.shape, actions.shape)

    def __call__(self, frame, action):
        return frame + 1, (action == 4).float(), torch.zeros_like(action, dtype=torch.bool)


def test_open_loop_replays_the_real_actions_after_the_context():
    burn_in = 2
    # one window of 6 steps: context steps 0-2 (2 actions), then steps 2, 3, 4 imagined with actions 2, 3, 4
    windows = world_model_probe.windows_of(Episodes([[0, 0, 5, 0, 7, 0]]), 6, count=1, by_reward=False)["all"]
    core = ActionCore()
    real, imagined, dreamt = world_model_probe.open_loop(core, windows, burn_in)
    assert core.context == ((1, burn_in + 1, 3, 64, 64), (1, burn_in))
    assert real.tolist() == [[5.0, 0.0, 7.0]] and imagined.tolist() == [[0.0, 0.0, 1.0]]
    start = windows[0].get(keys.PIXELS)[burn_in]
    assert dreamt.shape == (1, 4, 3, 64, 64) and torch.equal(dreamt[0, 0], start)
    assert torch.equal(dreamt[0, 3], start + 3)


def test_rewards_by_step_counts_each_step_of_the_open_loop():
    """Per-step rewards per 1,000 windows, of either sign, real before imagined."""
    real = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    imagined = torch.tensor([[0.9, 0.0, 0.2], [0.0, -1.0, 0.0]])
    assert world_model_probe.rewards_by_step(real, imagined) == "1: 500/500 2: 0/500 3: 500/0"


@pytest.mark.parametrize("fixture", ["atari_small", "crafter_small"])
def test_no_spread_when_the_action_cannot_matter(fixture):
    """With every action embedded alike, the last action cannot move the predicted reward."""
    models = small_models(fixture)
    with torch.no_grad():
        models.world_model.act_emb.weight.copy_(models.world_model.act_emb.weight[:1].expand_as(
            models.world_model.act_emb.weight))
    windows = world_model_probe.windows_of(Episodes([[0, 0, 0, 1, 0, 1]]), LENGTH, count=5)["rewarded"]
    p = world_model_probe.reward_head(models.tokenizer, models.world_model, windows)
    assert p.windows == 2 and p.spread_mean == pytest.approx(0, abs=1e-6)
    assert math.isnan(p.p_nonzero) == (fixture == "crafter_small")  # two-hot heads have no P(r≠0)


class ActionReward(torch.nn.Module):
    """A stand-in world model: a step's reward is +1 for sure with action 4, and 0 for sure otherwise."""

    config = SimpleNamespace(reward_head="sign")

    def __init__(self) -> None:
        super().__init__()
        self.act_emb = torch.nn.Embedding(6, 1)

    def training_sequence(self, frames, actions, tokens):
        return actions

    def forward(self, actions):
        paid = actions == 4
        logits = torch.stack([torch.full(actions.shape, -30.0), torch.where(paid, -30.0, 30.0),
                              torch.where(paid, 30.0, -30.0)], dim=-1)
        return SimpleNamespace(logits_rewards=logits)


def no_tokens(frames, actions, next_frames, update_codebook):
    return SimpleNamespace(tokens=None)


def test_what_it_reports_of_a_reward_that_only_the_action_decides():
    # windows end at steps 3, 4, 5, whose stored actions are 3, 4, 5: only the middle one paid
    windows = world_model_probe.windows_of(Episodes([[0, 0, 0, 1, 1, 1]]), LENGTH, count=5)["rewarded"]
    p = world_model_probe.reward_head(no_tokens, ActionReward(), windows)
    assert p.windows == 3
    assert p.p_nonzero == pytest.approx(1 / 3) and p.abs_reward == pytest.approx(1 / 3)
    assert p.spread_mean == pytest.approx(1) and p.spread_median == pytest.approx(1)


def test_a_reward_head_sure_of_a_reward():
    models = small_models("atari_small")
    last = models.world_model.head_rewards.head_module[-1]
    windows = world_model_probe.windows_of(Episodes([[0, 0, 0, 1, 1, 1]]), LENGTH, count=5)["rewarded"]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([-30.0, -30.0, 30.0]))  # +1 whatever it sees
    p = world_model_probe.reward_head(models.tokenizer, models.world_model, windows)
    assert p.p_nonzero == pytest.approx(1) and p.abs_reward == pytest.approx(1)
    assert p.spread_mean == pytest.approx(0, abs=1e-6)


def add_episode(store: EpisodeStore, rewards: torch.Tensor) -> None:
    n = rewards.numel()
    ends = torch.zeros(n, 1, dtype=torch.bool)
    ends[-1] = True
    store.add_batch(TensorDict({keys.PIXELS: torch.randint(0, 256, (n, 3, 64, 64), dtype=torch.uint8),
                                keys.ACTION: torch.arange(n) % 17, keys.NEXT_REWARD: rewards.view(-1, 1),
                                keys.NEXT_TERMINATED: ends, keys.NEXT_TRUNCATED: torch.zeros_like(ends)}, [n]))


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """A smoke-config run folder (config, untrained last.pt) whose training store holds one episode of
    three world-model windows with one reward, then 11 unrewarded episodes of 10 steps."""
    run = tmp_path_factory.mktemp("run")
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=["params=smoke"])
    (run / "config").mkdir(parents=True)
    OmegaConf.save(cfg, run / "config" / "trainer.yaml", resolve=True)
    torch.manual_seed(0)
    (run / "checkpoints").mkdir()
    torch.save(to_reference_state_dict(make_models(RunConfig.from_hydra(cfg), 17, torch.device("cpu"))),
               run / "checkpoints" / "last.pt")
    length = cfg.params.training.world_model.sequence_length
    rewards = torch.zeros(3 * length)
    rewards[length + 2] = 1.0  # the one rewarded step whose window fits in its episode
    store = EpisodeStore(run / "dataset" / "train", capacity=200)
    add_episode(store, rewards)
    for _ in range(11):
        add_episode(store, torch.zeros(10))
    return run


def test_the_command_line_on_a_run_folder(run_folder, tmp_path, capsys):
    """Reads a run folder as play does (config, last.pt, the stores): the three probes' lines."""
    world_model_probe.main([str(run_folder), "--windows", "5", "--png", str(tmp_path / "dreams.png")])
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("1. reconstruction (5 windows)") and out[2].startswith("2. imagined rewards (5 windows")
    assert out[3].startswith("   by step after the context, real / imagined: 1: ")
    assert out[-2].startswith("| rewarded | 1 |") and out[-1].startswith("| unrewarded | 5 |")
    assert (tmp_path / "dreams.png").is_file()
    with pytest.raises(SystemExit):
        world_model_probe.main([str(run_folder), "--split", "test"])  # no test episodes stored


def test_the_tokenizer_trained_offline_on_a_run_folder(run_folder, tmp_path, capsys):
    """benchmarks/tokenizer_offline.py: the preset's tokenizer trained on the stored episodes, the
    held-out errors printed every --every updates, the reconstructions saved."""
    tokenizer_offline.main([str(run_folder), "params=smoke", "--updates", "3", "--every", "2",
                            "--png", str(tmp_path / "rec.png"), "--save", str(tmp_path / "tok.pt")])
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out] == ["update 2", "update 3"]
    assert all("over the pixels that changed" in line for line in out)
    assert (tmp_path / "rec.png").is_file()
    # a run starts from the saved tokenizer: its weights, not the untrained ones of the run folder
    run = RunConfig.from_hydra(OmegaConf.load(run_folder / "config" / "trainer.yaml"))
    models = make_models(run, 17, torch.device("cpu"))
    init = InitializationConfig(str(tmp_path / "tok.pt"), load_world_model=False, load_actor_critic=False)
    assert initialize_models(models, init) == ["tokenizer"]
    untrained = torch.load(run_folder / "checkpoints" / "last.pt", weights_only=True)
    saved = torch.load(tmp_path / "tok.pt", weights_only=True)
    loaded = to_reference_state_dict(models)
    assert all(torch.equal(loaded[k], v) for k, v in saved.items())
    assert not all(torch.equal(untrained[k], v) for k, v in saved.items())
    for bad, said in ((["--updates", "0"], "expected positive counts"),
                      (["--save", str(tmp_path / "missing" / "tok.pt")], "its folder does not exist")):
        with pytest.raises(SystemExit):
            tokenizer_offline.main([str(run_folder), "params=smoke", *bad])
        assert said in capsys.readouterr().err
