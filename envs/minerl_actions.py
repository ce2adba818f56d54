"""The discrete Minecraft action set shared by the live MineRL adapter and the VPT importer.

MineRL's own action is a dict of ~10 (MineRL 0.4) to ~25 (MineRL 1.0 / VPT) keys: binary
buttons plus a continuous ``camera`` turn. worldsim models act through ``Discrete(n)``, so this
module fixes one small set of combinations, in the spirit of the hand-made discrete sets of the
MineRL competition baselines, and converts both ways. Because :class:`~worldsim.envs.minerl.MineRLEnv`
and :mod:`worldsim.data.minerl_import` both use it, a model trained on imported human recordings
acts in the live game with the same action indices.

Action table (``camera_step`` = 15 degrees by default; the camera names carry the step, so
stores recorded with different steps are reported as incompatible):

=====  =============================  ====================================================
index  name                           MineRL action (every other key no-op)
=====  =============================  ====================================================
0      ``noop``                       nothing
1      ``forward``                    forward
2      ``back``                       back
3      ``left``                       left (strafe)
4      ``right``                      right (strafe)
5      ``jump``                       jump
6      ``forward_jump``               forward + jump
7      ``sprint_forward``             forward + sprint
8      ``sneak``                      sneak
9      ``attack``                     attack (mine / hit)
10     ``forward_attack``             forward + attack
11     ``use``                        use (place / interact; MineRL 1.0 only, see below)
12     ``camera_up_15``               camera ``[-15, 0]`` (pitch up)
13     ``camera_down_15``             camera ``[+15, 0]`` (pitch down)
14     ``camera_left_15``             camera ``[0, -15]`` (yaw left)
15     ``camera_right_15``            camera ``[0, +15]`` (yaw right)
16     ``forward_camera_left_15``     forward + camera ``[0, -15]``
17     ``forward_camera_right_15``    forward + camera ``[0, +15]``
=====  =============================  ====================================================

Facts about MineRL used here (from the MineRL sources and docs, v0.4 and v1.0):

* MineRL 0.4 "simple embodiment" tasks (``MineRLTreechop-v0``, ``MineRLNavigate*-v0``,
  ``MineRLObtain*-v0``) have the binary keys ``forward back left right jump sneak sprint attack``
  (``Discrete(2)``) and ``camera``, a ``Box(-180, 180, (2,))`` of degrees; Navigate adds the enum
  ``place``, ObtainDiamond adds the enums ``place equip craft nearbyCraft nearbySmelt``, whose
  no-op value is the string ``"none"``. These envs have **no** ``use`` key: there action 11 is a
  no-op (it stays in the set so every task shares one action set).
* MineRL 1.0 (VPT, BASALT, ``HumanSurvival``) has ``ESC attack back drop forward hotbar.1``…
  ``hotbar.9 inventory jump left pickItem right sneak sprint swapHands use`` and ``camera``.
* ``camera = [pitch, yaw]`` in degrees, each limited to ``[-180, 180]``; Minecraft's pitch grows
  downwards (-90 looks straight up), so a positive first component looks down and a positive
  second component turns right.

:func:`minerl_to_discrete` picks the nearest discrete action with this documented order:

1. **Camera.** Each camera component is quantised to the nearest of ``{-step, 0, +step}``
   (``|v| > step / 2`` moves; a value exactly halfway rounds to 0; larger turns clip to one
   step). If both components move, the larger magnitude wins (yaw on a tie). A yaw turn while
   walking forward gives ``forward_camera_*``; any other camera turn gives ``camera_*`` and drops
   the buttons, since a turn changes the whole next frame.
2. **use**, then 3. **attack** (``forward_attack`` if forward is held), then 4. **jump**
   (``forward_jump`` if forward is held), then 5. **sneak**, then 6. **forward**
   (``sprint_forward`` if sprint is held), then 7. **back**, **left**, **right**; else ``noop``.

Opposite keys cancel as they do in Minecraft (forward with back, left with right). Every discrete
action survives ``minerl_to_discrete(discrete_to_minerl(i))`` unchanged.

VPT contractor recordings (openai/Video-Pre-Training, ``run_inverse_dynamics_model.py`` and
``data_loader.py``) store one JSON object per 20 Hz frame: ``mouse`` (``x y dx dy buttons
newButtons`` …), ``keyboard`` (``keys newKeys`` as ``"key.keyboard.w"``…), ``isGuiOpen``,
``hotbar`` (0-based), ``tick``, ``yaw pitch xpos ypos zpos`` …. :func:`vpt_record_to_minerl` reads
them as VPT does: keys through the VPT key table (w forward, s back, a left, d right, space jump,
left.shift sneak, left.control sprint, e inventory, q drop, f swapHands, escape ESC, 1-9
hotbar.1-9), mouse button 0 attack, 1 use, 2 pickItem, and ``camera = [dy, dx] * 360 / 2400``
degrees (VPT's ``CAMERA_SCALER``, matching a constant of MineRL's Java code). Differences from VPT,
all deliberate:

* **GUI open** (``isGuiOpen``): the mouse then moves a cursor over the inventory instead of the
  view, and movement keys do not walk, so only the screen keys ``ESC`` and ``inventory`` are kept
  and everything else (camera included) is no-op; with this action set such frames become
  ``noop``. VPT instead keeps the GUI cursor movement (rescaled per recorder version) and draws a
  cursor into the frame.
* **Camera clipping**: turns are clipped to MineRL's ``[-180, 180]``.
* **Null actions are kept**: VPT's behavioural cloning skips frames with no key, button or mouse
  movement; a world model needs every frame at a fixed rate, so they stay as ``noop``.

:func:`vpt_records_to_minerl` converts a whole recording and adds VPT's two cross-frame fixes: a
hotbar change without a number key (scroll wheel) sets ``hotbar.N``; and an attack button already
held in the first frame (``newButtons == [0]``, a known recorder glitch) is ignored until the
button is pressed again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

DEFAULT_CAMERA_STEP = 15.0
CAMERA_MAX = 180.0  # MineRL limits each camera component to [-180, 180] degrees
VPT_CAMERA_SCALER = 360.0 / 2400.0  # degrees per recorded mouse count (VPT)
VPT_FPS = 20

# Binary keys of MineRL 0.4 simple-embodiment tasks (Treechop, Navigate, Obtain*).
MINERL_04_KEYS: tuple[str, ...] = ("forward", "back", "left", "right", "jump", "sneak", "sprint", "attack", "camera")
# Keys of MineRL 1.0 human-control tasks (VPT, BASALT, HumanSurvival).
MINERL_10_KEYS: tuple[str, ...] = (
    "ESC", "attack", "back", "drop", "forward", *(f"hotbar.{i}" for i in range(1, 10)), "inventory", "jump",
    "left", "pickItem", "right", "sneak", "sprint", "swapHands", "use", "camera",
)
# Enum actions of MineRL 0.4 (Navigate, Obtain*): their no-op is the string "none".
ENUM_KEYS = frozenset({"place", "equip", "craft", "nearbyCraft", "nearbySmelt"})
ENUM_NOOP = "none"

# VPT's keyboard table: recorded key name -> MineRL action key.
VPT_KEY_MAP: dict[str, str] = {
    "key.keyboard.escape": "ESC",
    "key.keyboard.w": "forward",
    "key.keyboard.s": "back",
    "key.keyboard.a": "left",
    "key.keyboard.d": "right",
    "key.keyboard.space": "jump",
    "key.keyboard.left.shift": "sneak",
    "key.keyboard.left.control": "sprint",
    "key.keyboard.e": "inventory",
    "key.keyboard.q": "drop",
    "key.keyboard.f": "swapHands",
    **{f"key.keyboard.{i}": f"hotbar.{i}" for i in range(1, 10)},
}
VPT_MOUSE_BUTTONS: dict[int, str] = {0: "attack", 1: "use", 2: "pickItem"}
GUI_KEYS = ("ESC", "inventory")  # the keys kept while a GUI screen is open

# The action set: (name, pressed buttons, camera direction in steps as (pitch, yaw)).
# Camera names get the step appended by :func:`action_meanings`.
_ACTIONS: tuple[tuple[str, tuple[str, ...], tuple[int, int]], ...] = (
    ("noop", (), (0, 0)),
    ("forward", ("forward",), (0, 0)),
    ("back", ("back",), (0, 0)),
    ("left", ("left",), (0, 0)),
    ("right", ("right",), (0, 0)),
    ("jump", ("jump",), (0, 0)),
    ("forward_jump", ("forward", "jump"), (0, 0)),
    ("sprint_forward", ("forward", "sprint"), (0, 0)),
    ("sneak", ("sneak",), (0, 0)),
    ("attack", ("attack",), (0, 0)),
    ("forward_attack", ("forward", "attack"), (0, 0)),
    ("use", ("use",), (0, 0)),
    ("camera_up", (), (-1, 0)),
    ("camera_down", (), (1, 0)),
    ("camera_left", (), (0, -1)),
    ("camera_right", (), (0, 1)),
    ("forward_camera_left", ("forward",), (0, -1)),
    ("forward_camera_right", ("forward",), (0, 1)),
)
_INDEX = {name: i for i, (name, _, _) in enumerate(_ACTIONS)}
_BY_CAMERA = {cam: i for i, (_, buttons, cam) in enumerate(_ACTIONS) if cam != (0, 0) and not buttons}
_FORWARD_BY_YAW = {
    cam[1]: i for i, (_, buttons, cam) in enumerate(_ACTIONS) if buttons == ("forward",) and cam != (0, 0)
}
NUM_ACTIONS = len(_ACTIONS)


def check_camera_step(camera_step: float) -> float:
    step = float(camera_step)
    if not 0.0 < step <= CAMERA_MAX:
        raise ValueError(f"camera_step={camera_step!r} must be in (0, 180] degrees, e.g. camera_step=15.")
    return step


def action_meanings(camera_step: float = DEFAULT_CAMERA_STEP) -> list[str]:
    """Names of the discrete actions; camera actions carry the step in degrees (``camera_up_15``)."""
    step = check_camera_step(camera_step)
    return [f"{name}_{step:g}" if cam != (0, 0) else name for name, _, cam in _ACTIONS]


ACTION_MEANINGS: list[str] = action_meanings(DEFAULT_CAMERA_STEP)


def noop_action(action_space_keys: Iterable[str] = MINERL_04_KEYS) -> dict[str, Any]:
    """A MineRL no-op dict with exactly ``action_space_keys`` (enums ``"none"``, camera zeros)."""
    action: dict[str, Any] = {}
    for key in action_space_keys:
        if key == "camera":
            action[key] = np.zeros(2, dtype=np.float32)
        elif key in ENUM_KEYS:
            action[key] = ENUM_NOOP
        else:
            action[key] = 0
    return action


def discrete_to_minerl(index: int, action_space_keys: Iterable[str] = MINERL_04_KEYS,
                       camera_step: float = DEFAULT_CAMERA_STEP) -> dict[str, Any]:
    """The full MineRL action dict of discrete action ``index`` for an env with these keys.

    Buttons the env does not have (``use`` in MineRL 0.4 tasks) are left out, so the action
    degrades to what the env can do instead of failing.
    """
    if not 0 <= int(index) < NUM_ACTIONS:
        raise ValueError(f"discrete Minecraft action {index!r} is outside 0..{NUM_ACTIONS - 1} ({ACTION_MEANINGS}).")
    step = check_camera_step(camera_step)
    _, buttons, (pitch, yaw) = _ACTIONS[int(index)]
    action = noop_action(action_space_keys)
    for button in buttons:
        if button in action:
            action[button] = 1
    if "camera" in action:
        action["camera"] = np.array([pitch * step, yaw * step], dtype=np.float32)
    return action


def _pressed(action: Mapping[str, Any], key: str) -> bool:
    value = action.get(key, 0)
    if isinstance(value, str):  # enum actions are not buttons
        return False
    return bool(np.asarray(value).reshape(-1)[0]) if np.size(value) else False


def quantize_camera(camera: Any, camera_step: float = DEFAULT_CAMERA_STEP) -> tuple[int, int]:
    """``(pitch, yaw)`` camera degrees -> steps in ``{-1, 0, 1}`` each (nearest bin, halfway -> 0)."""
    step = check_camera_step(camera_step)
    cam = np.asarray(camera if camera is not None else (0.0, 0.0), dtype=np.float64).reshape(-1)
    if cam.shape != (2,):
        raise ValueError(f"camera must hold two numbers [pitch, yaw] (shape (2,) or (1, 2)), got {np.shape(camera)}.")
    cam = np.nan_to_num(cam, nan=0.0)
    return tuple(int(np.sign(v)) if abs(v) > step / 2 else 0 for v in cam)  # type: ignore[return-value]


def minerl_to_discrete(action: Mapping[str, Any], camera_step: float = DEFAULT_CAMERA_STEP) -> int:
    """The nearest discrete action of a MineRL action dict (priority order in the module docstring)."""
    pitch, yaw = quantize_camera(action.get("camera"), camera_step)
    forward = _pressed(action, "forward") and not _pressed(action, "back")
    back = _pressed(action, "back") and not _pressed(action, "forward")
    left = _pressed(action, "left") and not _pressed(action, "right")
    right = _pressed(action, "right") and not _pressed(action, "left")
    if pitch or yaw:
        cam = np.asarray(action.get("camera"), dtype=np.float64).reshape(-1)
        if pitch and yaw:  # keep the larger turn; yaw on a tie
            if abs(cam[0]) > abs(cam[1]):
                yaw = 0
            else:
                pitch = 0
        if yaw and forward:
            return _FORWARD_BY_YAW[yaw]
        return _BY_CAMERA[(pitch, yaw)]
    if _pressed(action, "use"):
        return _INDEX["use"]
    if _pressed(action, "attack"):
        return _INDEX["forward_attack" if forward else "attack"]
    if _pressed(action, "jump"):
        return _INDEX["forward_jump" if forward else "jump"]
    if _pressed(action, "sneak"):
        return _INDEX["sneak"]
    if forward:
        return _INDEX["sprint_forward" if _pressed(action, "sprint") else "forward"]
    if back:
        return _INDEX["back"]
    if left:
        return _INDEX["left"]
    if right:
        return _INDEX["right"]
    return _INDEX["noop"]


# ---------------------------------------------------------------------- VPT recordings
def vpt_record_to_minerl(step_json: Mapping[str, Any], *, ignore_attack: bool = False,
                         previous_hotbar: int | None = None) -> dict[str, Any]:
    """One line of a VPT ``.jsonl`` -> a MineRL 1.0 action dict (all MineRL 1.0 keys).

    ``ignore_attack`` drops a stuck attack button; ``previous_hotbar`` (0-based) lets a hotbar
    change without a number key set ``hotbar.N``. :func:`vpt_records_to_minerl` handles both.
    """
    action = noop_action(MINERL_10_KEYS)
    keyboard = step_json.get("keyboard") or {}
    mouse = step_json.get("mouse") or {}
    for key in keyboard.get("keys") or ():
        if key in VPT_KEY_MAP:
            action[VPT_KEY_MAP[key]] = 1
    for button in mouse.get("buttons") or ():
        name = VPT_MOUSE_BUTTONS.get(int(button))
        if name is not None and not (name == "attack" and ignore_attack):
            action[name] = 1
    hotbar = step_json.get("hotbar")
    if previous_hotbar is not None and hotbar is not None and int(hotbar) != int(previous_hotbar):
        action[f"hotbar.{int(hotbar) + 1}"] = 1
    if step_json.get("isGuiOpen", False):
        gui = noop_action(MINERL_10_KEYS)
        for key in GUI_KEYS:
            gui[key] = action[key]
        return gui
    camera = np.array([float(mouse.get("dy", 0.0)), float(mouse.get("dx", 0.0))]) * VPT_CAMERA_SCALER
    action["camera"] = np.clip(camera, -CAMERA_MAX, CAMERA_MAX).astype(np.float32)
    return action


def vpt_records_to_minerl(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A whole VPT recording -> MineRL action dicts, with VPT's stuck-attack and hotbar fixes."""
    actions = []
    attack_stuck = False
    last_hotbar = 0
    for i, record in enumerate(records):
        new_buttons = list((record.get("mouse") or {}).get("newButtons") or ())
        if i == 0:
            attack_stuck = new_buttons == [0]
        elif attack_stuck and 0 in new_buttons:
            attack_stuck = False
        actions.append(vpt_record_to_minerl(record, ignore_attack=attack_stuck, previous_hotbar=last_hotbar))
        if record.get("hotbar") is not None:
            last_hotbar = int(record["hotbar"])
    return actions


def is_null_action(action: Mapping[str, Any]) -> bool:
    """True when no button is pressed and the camera does not move (VPT's "null action")."""
    for key, value in action.items():
        if key == "camera":
            if np.any(np.asarray(value) != 0):
                return False
        elif _pressed(action, key):
            return False
    return True
