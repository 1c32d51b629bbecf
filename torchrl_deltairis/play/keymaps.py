"""Action names and keyboard maps of the play tool, as pygame key *names*.

Keys are named as ``pygame.key.name`` spells them (``"a"``, ``"space"``, ``"up"``, ``"page up"``), so
this module needs no pygame: the window turns a pressed key into its name and looks it up here.

- Crafter: the reference's keymap over crafter's 17 actions (``crafter.constants.actions``).
- Atari: every key of the reference's Atari keymap whose action name the game has
  (``get_action_meanings()``), mapped to that game's action index: a game's illegal actions have
  no key.
- Any other env (``family: gym``): the digit keys pick actions 0..9 (named ``action_i``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Keymap", "CONTROL_KEYS", "REPLAY_KEYS", "crafter_action_names", "atari_keymap", "crafter_keymap",
           "digit_keymap"]

# Keys of the tool itself, in every mode (never game actions).
CONTROL_KEYS = {"return": "reset", ".": "pause", ",": "record a clip", "escape": "quit"}

# Episode replay (-e): key name -> (what it does, shown in the help).
REPLAY_KEYS = {
    "left": "previous frame", "right": "next frame", "page down": "10 frames back", "page up": "10 frames on",
    "space": "first frame", "down": "previous episode", "up": "next episode", "t": "train episodes",
    "y": "test episodes",
}  # fmt: skip

_CRAFTER_KEYS = {
    "a": "move_left", "d": "move_right", "w": "move_up", "s": "move_down", "space": "do", "tab": "sleep",
    "r": "place_stone", "t": "place_table", "f": "place_furnace", "p": "place_plant",
    "1": "make_wood_pickaxe", "2": "make_stone_pickaxe", "3": "make_iron_pickaxe",
    "4": "make_wood_sword", "5": "make_stone_sword", "6": "make_iron_sword",
}  # fmt: skip

_ATARI_KEYS = {
    "space": "FIRE", "w": "UP", "d": "RIGHT", "a": "LEFT", "s": "DOWN",
    "t": "UPRIGHT", "r": "UPLEFT", "g": "DOWNRIGHT", "f": "DOWNLEFT",
    "up": "UPFIRE", "right": "RIGHTFIRE", "left": "LEFTFIRE", "down": "DOWNFIRE",
    "u": "UPRIGHTFIRE", "y": "UPLEFTFIRE", "j": "DOWNRIGHTFIRE", "h": "DOWNLEFTFIRE",
}  # fmt: skip


@dataclass(frozen=True)
class Keymap:
    """Key name -> action index, and the name of every action (index 0 is the no-op)."""

    keys: dict[str, int]
    action_names: list[str]

    def action_of(self, key_names: list[str]) -> int | None:
        """The action of the last mapped key among ``key_names`` (the newest press wins), else None."""
        mapped = [self.keys[name] for name in key_names if name in self.keys]
        return mapped[-1] if mapped else None

    def describe(self) -> list[str]:
        """``"key: action"`` lines, for the help printed when the window opens."""
        return [f"{key}: {self.action_names[index]}" for key, index in self.keys.items()]


def crafter_action_names() -> list[str]:
    """Crafter's 17 action names, from the crafter package (``noop``, ``move_left``, ...)."""
    import crafter.constants

    return list(crafter.constants.actions)


def crafter_keymap() -> Keymap:
    names = crafter_action_names()
    return Keymap({key: names.index(action) for key, action in _CRAFTER_KEYS.items()}, names)


def atari_keymap(action_meanings: list[str]) -> Keymap:
    """The Atari keymap restricted to the game's legal actions, mapped to the game's indices."""
    keys = {key: action_meanings.index(name) for key, name in _ATARI_KEYS.items() if name in action_meanings}
    return Keymap(keys, list(action_meanings))


def digit_keymap(num_actions: int) -> Keymap:
    """Digits 0..9 pick the first ten actions of an env without a dedicated keymap."""
    names = [f"action_{i}" for i in range(num_actions)]
    return Keymap({str(i): i for i in range(min(num_actions, 10))}, names)
