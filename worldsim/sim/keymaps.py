"""Keyboard bindings for playing a world by hand (``worldsim play``), one map per env family.

Keys are pygame key names (what ``pygame.key.name`` returns: ``"up"``, ``"space"``, ``"left shift"``,
``"a"``, ``"1"``), so this module needs no pygame and the scripted tests use the very map the
keyboard does. Action keys are *held*: every tick the held keys become one action, the action whose
parts are all held and that has the most parts (up + right + space gives ``UPRIGHTFIRE`` if the game
has it, else ``UPRIGHT``, else ``UP``), as DIAMOND's play mode combines keys. Each family's parts
come from the action meanings its adapter exposes (``env.unwrapped.action_meanings``), so a game's
minimal action set only offers what the game has. Number keys pick an action by index in every
family whose map leaves them free. Control keys (:data:`CONTROL_KEYS`) act once per press.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

CONTROL_KEYS: dict[str, str] = {
    "tab": "toggle_real", "p": "pause", "n": "step", "r": "reset",
    "+": "more_steps", "=": "more_steps", "[+]": "more_steps", "-": "fewer_steps", "[-]": "fewer_steps",
    "escape": "quit", "q": "quit",
}
CONTROL_HELP = "TAB dream/real  P pause  N step  R reset  +/- sampling steps  ESC/Q quit"

# key -> part of an action, per family (no control key may appear here)
ATARI_KEYS = {"up": "UP", "down": "DOWN", "left": "LEFT", "right": "RIGHT", "space": "FIRE"}
MINIWORLD_KEYS = {"up": "move_forward", "down": "move_back", "left": "turn_left", "right": "turn_right",
                  "e": "pickup", "d": "drop", "t": "toggle", "return": "done"}
# Crafter's own GUI keys (crafter/run_gui.py), moved off the control keys: sleep tab -> z,
# place_stone r -> c, place_plant p -> v; the arrows move too.
CRAFTER_KEYS = {"a": "move_left", "d": "move_right", "w": "move_up", "s": "move_down",
                "left": "move_left", "right": "move_right", "up": "move_up", "down": "move_down",
                "space": "do", "z": "sleep", "c": "place_stone", "t": "place_table", "f": "place_furnace",
                "v": "place_plant", "1": "make_wood_pickaxe", "2": "make_stone_pickaxe", "3": "make_iron_pickaxe",
                "4": "make_wood_sword", "5": "make_stone_sword", "6": "make_iron_sword"}
MINERL_KEYS = {"w": "forward", "s": "back", "a": "left", "d": "right", "space": "jump", "left ctrl": "sprint",
               "left shift": "sneak", "f": "attack", "e": "use", "up": "camera_up", "down": "camera_down",
               "left": "camera_left", "right": "camera_right"}
NOOP_NAMES = ("NOOP", "noop")


def atari_parts(meaning: str) -> frozenset[str]:
    """``"UPRIGHTFIRE"`` -> {UP, RIGHT, FIRE}; ``"NOOP"`` -> {}; an unknown name -> {itself} (no key makes it)."""
    if meaning in NOOP_NAMES:
        return frozenset()
    m = re.fullmatch(r"(UP|DOWN)?(RIGHT|LEFT)?(FIRE)?", meaning)
    return frozenset(p for p in m.groups() if p) if m and meaning else frozenset({meaning})


def minerl_parts(meaning: str) -> frozenset[str]:
    """``"forward_camera_left_15"`` -> {forward, camera_left}; ``"sprint_forward"`` -> {sprint, forward}."""
    name = re.sub(r"_[\d.]+$", "", meaning)  # camera actions carry their step in degrees
    if name in NOOP_NAMES:
        return frozenset()
    parts = set(re.findall(r"camera_(?:up|down|left|right)", name))
    rest = re.sub(r"camera_(?:up|down|left|right)", "", name)
    return frozenset(parts | {t for t in rest.split("_") if t})


def single_part(meaning: str) -> frozenset[str]:
    """One key per action (MiniWorld, Crafter); the no-op needs none."""
    return frozenset() if meaning in NOOP_NAMES else frozenset({meaning})


FAMILIES = {"atari": (ATARI_KEYS, atari_parts), "miniworld": (MINIWORLD_KEYS, single_part),
            "crafter": (CRAFTER_KEYS, single_part), "minerl": (MINERL_KEYS, minerl_parts),
            "minetest": (MINERL_KEYS, minerl_parts)}  # Minetest's actions are MineRL's, minus sprint and use


@dataclass(frozen=True)
class KeyMap:
    family: str
    action_meanings: tuple[str, ...]
    keys: dict[str, str]  # key name -> part
    parts: tuple[frozenset[str], ...]  # per action index: the parts that make it
    digits: bool  # number keys pick an action by index

    @property
    def noop(self) -> int | None:
        """The action played while no action key is held (None: the world waits, e.g. MiniWorld)."""
        return next((i for i, p in enumerate(self.parts) if not p), None)

    def action(self, held: Iterable[str]) -> int | None:
        """The action the held keys make, or None when none does and the world has no no-op."""
        held = set(held)
        if self.digits:
            picked = [int(k) for k in held if k.isdigit() and len(k) == 1 and int(k) < len(self.parts)]
            if picked:
                return min(picked)
        want = {self.keys[k] for k in held if k in self.keys}
        best, size = self.noop, 0
        for i, p in enumerate(self.parts):
            if p and p <= want and len(p) > size:
                best, size = i, len(p)
        return best

    def help_lines(self) -> list[str]:
        """The bindings, for the screen: only keys whose part some action of this game uses."""
        used = set().union(*self.parts) if self.parts else set()
        by_part: dict[str, list[str]] = {}
        for key, part in self.keys.items():
            if part in used:
                by_part.setdefault(part, []).append(key)
        items = [f"{'/'.join(keys)}: {part}" for part, keys in by_part.items()]
        lines = ["  ".join(items[i:i + 4]) for i in range(0, len(items), 4)]
        if self.digits:
            lines.append(f"0-{min(len(self.parts), 10) - 1}: action by index")
        return lines + [CONTROL_HELP]


def keymap_for(env_name: str, action_meanings: list[str]) -> KeyMap:
    """The key bindings of an env family (``atari``, ``miniworld``, ``crafter``, ``minerl``, ``minetest``) for
    the given action meanings; any other env gets number keys only."""
    keys, parse = FAMILIES.get(env_name, ({}, single_part))
    clash = set(keys) & set(CONTROL_KEYS)
    if clash:  # a programming error in the tables above
        raise ValueError(f"{env_name} key map reuses control keys {sorted(clash)}.")
    digits = not any(k.isdigit() for k in keys)
    return KeyMap(env_name, tuple(action_meanings), dict(keys), tuple(parse(m) for m in action_meanings), digits)
