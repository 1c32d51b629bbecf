"""What each mode shows, frame after frame, independent of pygame.

Every source has ``reset() -> View`` and ``tick(keys, playing) -> View``: ``keys`` are the names of the
keys pressed since the last tick, ``playing`` is False while the tool is paused.

- :class:`PlaySource`: a controller (the agent, or the user's keymap) acting in a world: the real
  test env (:class:`RealWorld`) or the world model (:class:`DreamWorld`, reset from a real first
  frame). An episode that ends is shown, then the next tick starts a new one.
- :class:`ReplaySource`: browses the episodes of the run's stores (``dataset/{train,test}``), read
  only (memory-mapped, nothing is written, so a running training is left alone).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.envs import EnvBase

from torchrl_deltairis import keys
from torchrl_deltairis.data.atomic_io import read_json
from torchrl_deltairis.play.dream import Agent, SlidingImaginationCore
from torchrl_deltairis.play.keymaps import Keymap

__all__ = ["View", "RealWorld", "DreamWorld", "PlaySource", "StoredEpisodes", "ReplaySource"]


@dataclass(frozen=True)
class View:
    """One displayed frame and what the header says about it (None: not applicable, shown as n/a)."""

    frame: np.ndarray  # uint8 [H, W, 3]
    title: str
    t: int
    action: str  # the action that led to this frame ("-" at the first frame)
    reward: float | None
    episode_return: float | None
    value: float | None
    end: str  # the end probability of the last step, or the stored end flag
    done: bool = False
    status: list[str] = field(default_factory=list)


def to_hwc(frame: torch.Tensor) -> np.ndarray:
    """uint8 ``[C, H, W]`` tensor -> ``[H, W, C]`` numpy array."""
    return np.ascontiguousarray(frame.detach().cpu().permute(1, 2, 0).numpy())


class RealWorld:
    """The real (test) environment, one TorchRL env."""

    end_probability = None

    def __init__(self, env: EnvBase) -> None:
        self.env = env
        self._td: TensorDictBase | None = None

    def reset(self) -> torch.Tensor:
        self._td = self.env.reset()
        return self._td.get(keys.PIXELS)

    def step(self, action: int) -> tuple[torch.Tensor, float, bool, float | None]:
        """-> next frame uint8 [C, H, W], reward, done, P(end) (None: the real env gives none)."""
        self._td.set(keys.ACTION, torch.tensor(action, dtype=torch.int64))
        nxt = self.env.step(self._td).get("next")
        self._td = nxt
        return nxt.get(keys.PIXELS), float(nxt.get(keys.REWARD)), bool(nxt.get(keys.DONE)), None

    def status(self) -> list[str]:
        return []


class DreamWorld:
    """The world model, reset from a real first frame of ``env``."""

    def __init__(self, core: SlidingImaginationCore, env: EnvBase) -> None:
        self.core, self.env = core, env
        self._frame: torch.Tensor | None = None

    def reset(self) -> torch.Tensor:
        frame = self.env.reset().get(keys.PIXELS)
        device = next(self.core.world_model.parameters()).device
        self._frame = frame.to(device)
        self.core.reset(self._frame[None, None], torch.zeros(1, 0, dtype=torch.int64, device=device))
        return frame

    def step(self, action: int) -> tuple[torch.Tensor, float, bool, float | None]:
        act = torch.tensor([action], dtype=torch.int64, device=self._frame.device)
        frame, reward, end = self.core(self._frame[None], act)
        self._frame = frame[0]
        return self._frame, float(reward[0]), bool(end[0]), float(self.core.end_probability[0])

    def status(self) -> list[str]:
        """How many past steps the dream remembers (it stops growing at the sliding window's size)."""
        steps = self.core.context_steps
        return [f"memory: {steps} step{'s' if steps != 1 else ''}"]


class PlaySource:
    """A controller in a world. ``keymap`` None: the agent acts; else the user's keys act (no key:
    the no-op, action 0) and the agent's critic gives the value."""

    def __init__(self, title: str, world: RealWorld | DreamWorld, agent: Agent, action_names: list[str],
                 keymap: Keymap | None = None) -> None:
        self.title, self.world, self.agent = title, world, agent
        self.action_names, self.keymap = action_names, keymap
        self._view: View | None = None
        self._next_action = 0

    def _observe(self, frame: torch.Tensor) -> float:
        if self.keymap is not None:
            return self.agent.observe(frame)
        self._next_action, value = self.agent.act(frame)
        return value

    def reset(self) -> View:
        self.agent.reset()
        frame = self.world.reset()
        self._view = View(to_hwc(frame), self.title, 0, "-", None, 0.0, self._observe(frame), "n/a")
        return self._view

    def tick(self, key_names: list[str], playing: bool) -> View:
        if self._view is not None and not playing:
            return self._view
        if self._view is None or self._view.done:  # the end was shown for one tick: a new episode
            return self.reset()
        action = self._next_action if self.keymap is None else (self.keymap.action_of(key_names) or 0)
        frame, reward, done, p_end = self.world.step(action)
        end = "n/a" if p_end is None else f"p={p_end:.2f}"
        status = [*self.world.status(), *(["episode over"] if done else [])]
        self._view = View(to_hwc(frame), self.title, self._view.t + 1, self.action_names[action], reward,
                          self._view.episode_return + reward, self._observe(frame), end, done, status)
        return self._view


class StoredEpisodes:
    """The episodes of one episode store, read only: ``commit.json`` and the memory-mapped columns."""

    def __init__(self, directory: Path) -> None:
        commit = read_json(directory / "commit.json")
        rows = TensorDict.load_memmap(directory / "storage")[1: int(commit["num_rows"])]  # row 0: padding
        episode, step = rows.get(keys.EPISODE).clone(), rows.get(keys.STEP).clone()
        self.rows = rows
        self.ids = torch.unique(episode).tolist()
        order = torch.argsort(episode * (int(step.max()) + 1 if step.numel() else 1) + step)
        counts = torch.bincount(episode, minlength=max(self.ids, default=-1) + 1)
        self._rows = dict(zip(self.ids, torch.split(order, [int(counts[i]) for i in self.ids])))

    def __len__(self) -> int:
        return len(self.ids)

    def episode(self, index: int) -> TensorDictBase:
        """Episode number ``index`` (in id order) as a TensorDict [length] with ``keys.STORE_KEYS``."""
        return self.rows[self._rows[self.ids[index]]]


def open_stores(run_dir: Path | None) -> dict[str, StoredEpisodes]:
    """The run's non-empty stores among ``dataset/train`` and ``dataset/test``."""
    stores = {}
    for split in ("train", "test"):
        directory = None if run_dir is None else run_dir / "dataset" / split
        if directory is not None and (directory / "commit.json").is_file():
            store = StoredEpisodes(directory)
            if len(store):
                stores[split] = store
    return stores


class ReplaySource:
    """Browses stored episodes (keys in :data:`~torchrl_deltairis.play.keymaps.REPLAY_KEYS`); while
    the tool is not paused, the frames advance by themselves."""

    start_paused = True

    def __init__(self, stores: dict[str, StoredEpisodes], action_names: list[str]) -> None:
        if not stores:
            raise ValueError("no stored episodes: the run folder's dataset/train and dataset/test are "
                             "missing or empty")
        self.stores, self.action_names = stores, action_names
        self.split = "test" if "test" in stores else "train"
        self.index, self.t = 0, 0
        self._load()

    def _load(self) -> None:
        episode = self.stores[self.split].episode(self.index)
        self.pixels = episode.get(keys.PIXELS)
        self.actions = episode.get(keys.ACTION).tolist()
        self.rewards = episode.get(keys.REWARD).tolist()
        self.ends = (episode.get(keys.TERMINATED) | episode.get(keys.TRUNCATED)).tolist()
        self.returns = np.cumsum(self.rewards).tolist()

    def reset(self) -> View:
        self.t = 0
        return self._view([])

    def _navigate(self, name: str) -> str | None:
        moves = {"left": -1, "right": 1, "page down": -10, "page up": 10}
        length, count = len(self.actions), len(self.stores[self.split])
        if name in moves:
            self.t = min(max(self.t + moves[name], 0), length - 1)
        elif name == "space":
            self.t = 0
        elif name in ("up", "down"):
            self.index, self.t = (self.index + (1 if name == "up" else -1)) % count, 0
            self._load()
        elif name in ("t", "y"):
            split = "train" if name == "t" else "test"
            if split not in self.stores:
                return f"no {split} episodes"
            self.split, self.index, self.t = split, 0, 0
            self._load()
        return None

    def tick(self, key_names: list[str], playing: bool) -> View:
        notes = [note for note in map(self._navigate, key_names) if note]
        if playing and not key_names:
            self.t = min(self.t + 1, len(self.actions) - 1)
        return self._view(notes)

    def _view(self, notes: list[str]) -> View:
        t, store = self.t, self.stores[self.split]
        title = f"{self.split} episode {store.ids[self.index]} ({self.index + 1}/{len(store)})"
        view = View(to_hwc(self.pixels[t]), title, t, self.action_names[self.actions[t]], self.rewards[t],
                    self.returns[t], None, "yes" if self.ends[t] else "no")
        return replace(view, status=[f"frame {t + 1}/{len(self.actions)}", *notes])
