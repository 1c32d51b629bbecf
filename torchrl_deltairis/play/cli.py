"""``python -m torchrl_deltairis.play [PATH] [-w | -a | -e] [-h] [-f FPS] ...``: the command line.

PATH (default ``.``) is a run folder or a reference-format checkpoint file (see
:mod:`torchrl_deltairis.play.loading`). ``-h`` turns the header *on* (the reference's ``-h``
turned it off: docs/departures.md#bugs-fixed); ``--help`` prints the help. Errors a user can fix print one line and exit with 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torchrl.envs import EnvBase

from torchrl_deltairis.envs import make_env
from torchrl_deltairis.envs.atari import AtariConfig, make_atari_gymnasium
from torchrl_deltairis.envs.crafter import CrafterConfig, make_crafter_env
from torchrl_deltairis.envs.generic import GymConfig
from torchrl_deltairis.play.dream import Agent, SlidingImaginationCore
from torchrl_deltairis.play.keymaps import (
    CONTROL_KEYS,
    REPLAY_KEYS,
    Keymap,
    atari_keymap,
    crafter_action_names,
    crafter_keymap,
    digit_keymap,
)
from torchrl_deltairis.play.loading import Loaded, PlayError, load
from torchrl_deltairis.play.recording import check_record_path
from torchrl_deltairis.play.sources import DreamWorld, PlaySource, RealWorld, ReplaySource, open_stores
from torchrl_deltairis.play.window import WindowOptions, init_display, require_pygame, run_window

__all__ = ["build_parser", "main"]

MODES = {"agent_in_env": "agent in env", "play_in_world_model": "you in world model",
         "agent_in_world_model": "agent in world model", "episode_replay": "episode replay"}


KEYS_HELP = ("keys: Enter reset, . pause, , record a clip (media/recordings), Escape quit; "
             "-w: the game's keymap (printed at start); -e: left/right frame, PageDown/PageUp -10/+10, "
             "space first frame, down/up episode, t train, y test, . play/stop")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m torchrl_deltairis.play", add_help=False, epilog=KEYS_HELP,
        description="Watch the agent play, play inside the world model, or browse saved episodes.")
    add = parser.add_argument
    add("path", nargs="?", default=".", type=Path,
        help="a run folder (config/trainer.yaml + checkpoints/last.pt) or a checkpoint file .pt (default .)")
    mode = parser.add_mutually_exclusive_group()
    for flags, const, text in (
            (("-w", "--world-model"), "play_in_world_model", "you play in the world model (real 1st frame)"),
            (("-a", "--agent-world-model"), "agent_in_world_model", "the agent plays inside the world model"),
            (("-e", "--episode"), "episode_replay", "browse the run's saved episodes (dataset/train, test)")):
        mode.add_argument(*flags, dest="mode", action="store_const", const=const, help=text)
    parser.set_defaults(mode="agent_in_env")
    add("-h", "--header", action="store_true",
        help="show a header: time step, action, reward, return, value, end probability")
    add("-f", "--fps", type=float, metavar="FPS", default=5.0, help="frames per second (default 5)")
    add("--record", type=Path, metavar="FILE", help="record the session to FILE.gif or FILE.mp4")
    add("--device", choices=("auto", "cpu", "cuda"), default="auto",
        help="where the models run (default: a GPU if there is one)")
    add("--seed", type=int, metavar="N", default=0, help="seeds the env and the sampling (default 0)")
    add("--size", type=int, metavar="PIXELS", default=768, help="window width in pixels (default 768)")
    add("--max-steps", type=int, metavar="N", help="stop after N frames (headless runs, tests)")
    add("--screenshot", type=Path, metavar="FILE", help="save the window as FILE.png when it closes")
    add("--params", type=Path, metavar="YAML",
        help="checkpoint file only: configs/params/{crafter,atari}.yaml or a reference params YAML")
    add("--env", metavar="ID",
        help="checkpoint file only: crafter (default), an Atari game (Breakout) or a gymnasium id")
    add("--help", action="help", help="show this help and exit")
    return parser


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise PlayError("--device cuda but no CUDA device is available; use --device cpu or auto")
    return torch.device(name)


def _check_options(args: argparse.Namespace) -> None:
    if args.fps <= 0:
        raise PlayError(f"--fps {args.fps}: expected a positive number of frames per second")
    if args.size < 64:
        raise PlayError(f"--size {args.size}: expected at least 64 pixels")
    if args.max_steps is not None and args.max_steps < 1:
        raise PlayError(f"--max-steps {args.max_steps}: expected at least 1")
    if args.screenshot is not None and args.screenshot.suffix.lower() not in (".png", ".bmp", ".tga", ".jpg"):
        raise PlayError(f"--screenshot {str(args.screenshot)!r}: expected a .png (or .bmp, .tga, .jpg) file")
    if args.record is not None:
        check_record_path(args.record)


def action_names(loaded: Loaded) -> list[str]:
    """Crafter's names (crafter package), the Atari game's ``get_action_meanings()``, else ``action_i``."""
    if isinstance(loaded.env, CrafterConfig):
        return crafter_action_names()
    if isinstance(loaded.env, AtariConfig):
        game = make_atari_gymnasium(loaded.env)
        try:
            return list(game.unwrapped.get_action_meanings())
        finally:
            game.close()
    return [f"action_{i}" for i in range(loaded.models.configs.world_model.num_actions)]


def keymap_for(name: str, names: list[str]) -> Keymap:
    """The keymap a run's config names (``crafter``, ``atari/<id>``, ``empty``): digits for ``empty``."""
    if name == "crafter":
        return crafter_keymap()
    return atari_keymap(names) if name.startswith("atari/") else digit_keymap(len(names))


def _print_keys(mode: str, keymap: Keymap | None) -> None:
    lines = [f"{key}: {what}" for key, what in CONTROL_KEYS.items()]
    if mode == "episode_replay":
        lines += [f"{key}: {what}" for key, what in REPLAY_KEYS.items()]
    if keymap is not None:
        lines += keymap.describe()
    print(f"{MODES[mode]}. Keys: " + ", ".join(lines))


def make_play_env(cfg: AtariConfig | CrafterConfig | GymConfig, seed: int) -> EnvBase:
    """The real env, seeded. Crafter takes its seed at construction: seeding it afterwards would
    generate a world (a second) only to throw it away."""
    if isinstance(cfg, CrafterConfig):
        return make_crafter_env(cfg, seed=seed)
    return make_env(cfg, seed=seed)


def make_source(mode: str, loaded: Loaded, names: list[str],
                seed: int) -> tuple[PlaySource | ReplaySource, Keymap | None, EnvBase | None]:
    """The mode's source, the user's keymap (``-w`` only) and the real env it uses (None for ``-e``)."""
    if mode == "episode_replay":
        stores = open_stores(loaded.run_dir)
        if not stores:
            where = ("a checkpoint file has none" if loaded.run_dir is None
                     else f"{loaded.run_dir}/dataset is empty")
            raise PlayError(f"-e browses a run folder's saved episodes (dataset/train, dataset/test): "
                            f"{where}")
        return ReplaySource(stores, names), None, None
    num_actions = loaded.models.configs.world_model.num_actions
    if len(names) != num_actions:
        raise PlayError(f"the checkpoint's models have {num_actions} actions but the env {loaded.env.id} has "
                        f"{len(names)}; pass --env with a game of {num_actions} actions")
    env = make_play_env(loaded.env, seed)
    agent = Agent(loaded.models.actor_critic.model)
    if mode == "agent_in_env":
        return PlaySource(MODES[mode], RealWorld(env), agent, names), None, env
    core = SlidingImaginationCore(loaded.models.tokenizer, loaded.models.world_model, sample=True)
    keymap = keymap_for(loaded.keymap, names) if mode == "play_in_world_model" else None
    return PlaySource(MODES[mode], DreamWorld(core, env), agent, names, keymap), keymap, env


def run(args: argparse.Namespace, key_script: Mapping[int, Sequence[str]] | None = None) -> None:
    _check_options(args)
    pygame = require_pygame()
    init_display(pygame)  # before loading anything: pygame and a display are the usual missing pieces
    try:
        _run(args, key_script)
    finally:
        pygame.display.quit()


def _run(args: argparse.Namespace, key_script: Mapping[int, Sequence[str]] | None) -> None:
    device = _device(args.device)
    loaded = load(args.path, args.params, args.env, device)
    torch.manual_seed(args.seed)
    names = action_names(loaded)
    source, keymap, env = make_source(args.mode, loaded, names, args.seed)
    _print_keys(args.mode, keymap)
    options = WindowOptions(size=args.size, fps=args.fps, header=args.header, record=args.record,
                            screenshot=args.screenshot, max_steps=args.max_steps, media_dir=loaded.media_dir,
                            held_keys=tuple(keymap.keys) if keymap else (),
                            start_paused=getattr(source, "start_paused", False),
                            key_script=dict(key_script or {}))
    try:
        run_window(source, options)
    finally:
        if env is not None:
            env.close()


def main(argv: Sequence[str] | None = None, *, key_script: Mapping[int, Sequence[str]] | None = None) -> int:
    """The command; ``key_script`` (tick -> key names) presses keys through pygame's event queue."""
    args = build_parser().parse_args(argv)
    try:
        run(args, key_script)
    except PlayError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
