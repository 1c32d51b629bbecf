"""Saved episodes (recent and best per split) and the GIF videos of a run's media folder."""

import pytest
import torch
from PIL import Image
from tensordict import TensorDict

from torchrl_deltairis import keys
from torchrl_deltairis.data import EpisodeStore
from torchrl_deltairis.media import (
    END_COLOR,
    IMAGINED_COLOR,
    REAL_COLOR,
    EpisodeSaver,
    episodes_video,
    imagination_video,
    parse_episode_file_name,
    write_gif,
)


def _episode(length: int, episode_return: float, shade: int) -> TensorDict:
    """One env's episode as a collector batch [length]: frame t is filled with shade + t, the whole
    return comes on the last step."""
    reward = torch.zeros(length, 1)
    reward[-1] = episode_return
    done = torch.zeros(length, 1, dtype=torch.bool)
    done[-1] = True
    return TensorDict({keys.PIXELS: (shade + torch.arange(length, dtype=torch.uint8)).view(-1, 1, 1, 1).expand(-1, 3, 64, 64),
                       keys.ACTION: torch.zeros(length, dtype=torch.long), keys.NEXT_REWARD: reward,
                       keys.NEXT_TERMINATED: done, keys.NEXT_TRUNCATED: torch.zeros_like(done),
                       keys.NEXT_DONE: done}, batch_size=[length])


def _saved(folder) -> list[tuple[int, int, float]]:
    return sorted(parse_episode_file_name(p) for p in folder.glob("*.pt"))


def test_saver_keeps_the_most_recent_and_the_best_episodes(tmp_path):
    store = EpisodeStore(tmp_path / "store", capacity=1000)
    saver = EpisodeSaver(tmp_path / "episodes", store, num_to_save=2)
    for i, ret in enumerate((5.0, 1.0, 9.0)):
        store.add_batch(_episode(3 + i, ret, shade=10 * i))
    assert saver.update(epoch=1) == [0, 1, 2]
    assert _saved(tmp_path / "episodes" / "recent") == [(1, 1, 1.0), (1, 2, 9.0)]
    assert _saved(tmp_path / "episodes" / "best") == [(1, 0, 5.0), (1, 2, 9.0)]
    store.add_batch(_episode(2, 7.0, shade=99))
    assert saver.update(epoch=2) == [3]
    assert saver.update(epoch=2) == []  # nothing new
    assert _saved(tmp_path / "episodes" / "recent") == [(1, 2, 9.0), (2, 3, 7.0)]
    assert _saved(tmp_path / "episodes" / "best") == [(1, 2, 9.0), (2, 3, 7.0)]
    saved = torch.load(next((tmp_path / "episodes" / "best").glob("epoch_0002_*.pt")), weights_only=True)
    assert set(saved) == set(keys.STORE_KEYS)
    assert saved[keys.PIXELS].shape == (2, 3, 64, 64) and int(saved[keys.PIXELS].max()) == 100
    assert float(saved[keys.REWARD].sum()) == 7.0

    # a resumed run (a new saver on the same store) does not rewrite the episodes it already saw
    again = EpisodeSaver(tmp_path / "episodes", store, num_to_save=2)
    assert again.update(epoch=3) == []


def test_saver_after_the_store_is_cleared_sees_new_episodes(tmp_path):
    store = EpisodeStore(tmp_path / "store", capacity=100)
    saver = EpisodeSaver(tmp_path / "episodes", store, num_to_save=1)
    store.add_batch(_episode(2, 3.0, shade=1))
    saver.update(epoch=1)
    store.clear()
    saver.reset_seen()
    store.add_batch(_episode(2, 1.0, shade=2))
    assert saver.update(epoch=2) == [0]
    assert _saved(tmp_path / "episodes" / "recent") == [(2, 0, 1.0)]
    assert _saved(tmp_path / "episodes" / "best") == [(1, 0, 3.0)]  # the best of all evaluations
    with pytest.raises(ValueError, match="num_episodes_to_save"):
        EpisodeSaver(tmp_path / "x", store, num_to_save=-1)


def _gif_frames(path) -> list:
    with Image.open(path) as gif:
        frames = []
        for i in range(gif.n_frames):
            gif.seek(i)
            frames.append(gif.convert("RGB").copy())
    return frames


def test_episodes_video_shows_episodes_side_by_side_until_the_longest_ends(tmp_path):
    store = EpisodeStore(tmp_path / "store", capacity=100)
    store.add_batch(_episode(3, 0.0, shade=50))
    store.add_batch(_episode(5, 0.0, shade=200))
    frames = _gif_frames(episodes_video(store, tmp_path / "v.gif"))
    assert len(frames) == 5 and frames[0].size == (2 * 64 * 2, 64 * 2)  # two episodes, upscaled ×2
    assert frames[-1].getpixel((10, 10)) == (52, 52, 52)  # the short episode holds its last frame
    assert frames[-1].getpixel((128 + 10, 10)) == (204, 204, 204)
    assert episodes_video(EpisodeStore(tmp_path / "empty", capacity=10), tmp_path / "none.gif") is None


def test_imagination_video_frames_real_imagined_and_ended_steps(tmp_path):
    context = (20 + torch.arange(2, dtype=torch.uint8)).view(1, 2, 1, 1, 1).expand(2, 2, 3, 64, 64)
    imagined = (120 + torch.arange(3, dtype=torch.uint8)).view(1, 3, 1, 1, 1).expand(2, 3, 3, 64, 64)
    ends = torch.tensor([[False, True, False], [False, False, False]])
    frames = _gif_frames(imagination_video(context, imagined, ends, tmp_path / "dream.gif", columns=2))
    assert len(frames) == 2 + 3
    assert frames[0].getpixel((0, 0)) == REAL_COLOR and frames[0].getpixel((40, 40)) == (20, 20, 20)
    assert frames[2].getpixel((0, 0)) == IMAGINED_COLOR and frames[2].getpixel((40, 40)) == (120, 120, 120)
    assert frames[3].getpixel((0, 0)) == END_COLOR  # rollout 0 predicted an end at its second step
    assert frames[4].getpixel((0, 0)) == END_COLOR and frames[4].getpixel((128, 0)) == IMAGINED_COLOR
    with pytest.raises(ValueError, match="no frames"):
        write_gif(tmp_path / "empty.gif", [])
