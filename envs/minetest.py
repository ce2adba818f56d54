"""Minetest, a Minecraft-like first-person voxel world that runs offline here, as a real env.

MineRL cannot be built on these machines (Java 8, it downloads Minecraft); Minetest (Debian's
``minetest`` 5.6 with ``minetest-data``'s "Minetest Game") can. Each env runs its own game
(:class:`~worldsim.envs.minetest_game.MinetestGame`: an ``Xvfb`` display, a UDP port on loopback,
a home folder; every process reaped on close and killed by the kernel if this process dies).

* Observation: the first-person view, ``uint8`` RGB ``(h, w, 3)`` (default 64×64), rendered at
  ``render_scale`` times that size and area-resized (antialiasing, as the Atari adapter does). No
  HUD: hotbar, hand, crosshair, health and node highlight are hidden; no clouds, no particles, no
  view bobbing; the time of day is fixed at noon.
* Actions: ``Discrete(16)``, the MineRL adapter's set (:mod:`worldsim.envs.minerl_actions`)
  without ``sprint_forward`` and ``use`` (Minetest Game has no sprint; placing is not part of the
  task). Names in ``env.unwrapped.action_meanings``::

      0 noop  1 forward  2 back  3 left  4 right  5 jump  6 forward_jump  7 sneak  8 attack
      9 forward_attack  10 camera_up_15  11 camera_down_15  12 camera_left_15  13 camera_right_15
      14 forward_camera_left_15  15 forward_camera_right_15

  Movement keys and the dig button are held for the whole step (and stay held into the next step
  if it holds them too; if no step comes for ``idle_release`` seconds, e.g. while PPO updates, they
  are released, so the player does not walk on while the agent is away); a camera action turns by ``camera_step`` degrees through the mouse, and
  does not tilt the view past ``pitch_limit`` degrees up or down (60 by default: a random walk of
  the camera would otherwise spend much of its time staring at the sky or the ground).
  Keys that open menus (Esc, T, /, I, F10, ...) are never sent.
* Real time: the game does not wait for ``step``; the env paces itself at ``control_hz`` (20 Hz)
  and ``metadata["realtime"]`` is ``True``, so recordings carry wall-clock timestamps. Timed
  sequences are therefore not bit-reproducible (a scene set up with :meth:`MinetestEnv.teleport`
  and :meth:`MinetestEnv.settle` is: same seed, same pose, same frame).
* The task, **collect wood**: reward +1 per tree node (``group:tree``) the player digs, counted by
  the world mod; the player holds a diamond axe (a trunk node takes 1 s of ``attack``). Episodes
  start standing 3 (or 2) nodes from a tree trunk and facing it, one of the ``num_starts`` trees nearest
  the world's spawn point, drawn by the reset seed; they are truncated after
  ``max_episode_steps`` steps (default 1,000 = 50 s) and never terminate (damage is off). Every
  node the player changed is restored at reset, so each episode starts in the same world.
* Seeding: ``world_seed`` fixes the map (the world is generated when the env starts);
  ``reset(seed=s)`` seeds ``np_random``, which draws each episode's start tree.

Ground truth in ``info`` (the world mod's latest report; it can lag the frame by up to ~0.1 s
while the player moves, and is exact once :meth:`MinetestEnv.settle` returns):

=========================  ============  =====================================================
key                        shape, dtype  meaning
=========================  ============  =====================================================
``state/pos``              (3,) f32      feet position ``(x, y, z)``, ``y`` up, nodes 1 unit
``state/yaw``              () f32        radians, 0 facing ``+z``, counter-clockwise from above
``state/pitch``            () f32        radians, positive looking down
``state/pointed_pos``      (3,) f32      the node looked at within reach (4 nodes), else 0
``state/pointed_kind``     () i32        its kind, index into :data:`POINTED_KINDS` (0 = none)
``state/wood``             () i32        tree nodes dug this episode
=========================  ============  =====================================================

Scene scripting, for probes: :meth:`MinetestEnv.teleport`, :meth:`MinetestEnv.set_nodes` (e.g.
coloured ``wool:red`` pillars), :meth:`MinetestEnv.settle` (wait until the frame stops changing).
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from typing import Any, Sequence

import gymnasium as gym
import numpy as np

from worldsim.envs.common import STATE_PREFIX, parse_frame_size, resize_frame, rgb_space
from worldsim.envs.minetest_game import POINTED_KINDS, GameState, MinetestError, MinetestGame

__all__ = ["MinetestEnv", "MinetestError", "POINTED_KINDS", "ACTIONS", "action_meanings"]

# (name, held keys, dig button, camera direction in steps as (pitch, yaw)); camera names get the step.
ACTIONS: tuple[tuple[str, tuple[str, ...], bool, tuple[int, int]], ...] = (
    ("noop", (), False, (0, 0)),
    ("forward", ("forward",), False, (0, 0)),
    ("back", ("back",), False, (0, 0)),
    ("left", ("left",), False, (0, 0)),
    ("right", ("right",), False, (0, 0)),
    ("jump", ("jump",), False, (0, 0)),
    ("forward_jump", ("forward", "jump"), False, (0, 0)),
    ("sneak", ("sneak",), False, (0, 0)),
    ("attack", (), True, (0, 0)),
    ("forward_attack", ("forward",), True, (0, 0)),
    ("camera_up", (), False, (-1, 0)),
    ("camera_down", (), False, (1, 0)),
    ("camera_left", (), False, (0, -1)),
    ("camera_right", (), False, (0, 1)),
    ("forward_camera_left", ("forward",), False, (0, -1)),
    ("forward_camera_right", ("forward",), False, (0, 1)),
)
MOUSE_FACTOR = 1.402  # degrees per pixel per unit of mouse_sensitivity in Minetest 5.6 (measured; calibrated at start)
Pose = Sequence[float]  # (x, y, z, yaw, pitch)


def action_meanings(camera_step: float) -> list[str]:
    step = f"{camera_step:g}".replace(".", "p")
    return [f"{name}_{step}" if cam != (0, 0) else name for name, _, _, cam in ACTIONS]


def _watchdog(ref: "weakref.ref[MinetestEnv]") -> None:
    """Release the held inputs of an env that has not been stepped for ``idle_release`` seconds."""
    while True:
        time.sleep(0.05)
        env = ref()
        if env is None or not env.game.alive:
            return
        with env._inputs:  # check and release at once: a step cannot press keys in between
            if (env._held or env._digging) and time.monotonic() - env._last_step > env.idle_release:
                env._release_held()
        del env


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


class MinetestEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 20, "realtime": True}

    def __init__(self, frame_size: int | Sequence[int] = 64, world_seed: int = 1, max_episode_steps: int = 1000,
                 control_hz: float = 20.0, camera_step: float = 15.0, pitch_limit: float = 60.0,
                 render_scale: int = 2, fov: int = 72,
                 view_range: int = 40, num_starts: int = 8, start_radius: int = 48,
                 idle_release: float = 0.25, executable: str | None = None, startup_timeout: float = 60.0,
                 render_mode: str | None = None) -> None:
        self.frame_size = parse_frame_size(frame_size)
        if render_scale < 1 or max_episode_steps < 1 or control_hz <= 0 or num_starts < 1:
            raise ValueError(f"render_scale ({render_scale}), max_episode_steps ({max_episode_steps}), num_starts "
                             f"({num_starts}) must be >= 1 and control_hz ({control_hz}) > 0.")
        if not 1.0 <= camera_step <= 90.0:
            raise ValueError(f"camera_step={camera_step} must be between 1 and 90 degrees, e.g. 15.")
        if not 0.0 <= pitch_limit <= 90.0:
            raise ValueError(f"pitch_limit={pitch_limit} must be between 0 and 90 degrees, e.g. 60.")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r}: Minetest renders 'rgb_array' only (or None).")
        self.render_mode = render_mode
        self.max_episode_steps, self.control_hz, self.camera_step = max_episode_steps, control_hz, camera_step
        self.pitch_limit = pitch_limit
        self.num_starts, self.start_radius = num_starts, start_radius
        self.observation_space = rgb_space(self.frame_size)
        self.action_space = gym.spaces.Discrete(len(ACTIONS))
        self.action_meanings = action_meanings(camera_step)
        h, w = self.frame_size[0] * render_scale, self.frame_size[1] * render_scale
        # a camera step moves the pointer by a quarter of the window: a few steps that pile up before
        # the game re-centres it stay on the screen (three windows wide, see MinetestGame)
        self._camera_px = max(8, min(w, h) // 4)
        sensitivity = camera_step / (MOUSE_FACTOR * self._camera_px)
        self.game = MinetestGame(w, h, world_seed, fov, view_range, sensitivity, executable, startup_timeout)
        self._finalizer = weakref.finalize(self, self.game.close)
        self._starts: list[Pose] | None = None
        self._calibrated = False
        self._held: set[str] = set()
        self._digging = False
        self._steps, self._wood = 0, 0
        self._deadline = 0.0
        self._frame: np.ndarray | None = None
        self._state: GameState | None = None
        self._inputs = threading.Lock()  # the held inputs, shared with the idle watchdog
        self._last_step = time.monotonic()
        self.idle_release = idle_release
        threading.Thread(target=_watchdog, args=(weakref.ref(self),), daemon=True, name="minetest-idle").start()

    # ------------------------------------------------------------------ scene scripting
    def teleport(self, pose: Pose) -> np.ndarray:
        """Put the player at feet position (x, y, z) looking at (yaw, pitch), radians, and wait
        until the view has settled there; returns the observation."""
        if len(pose) != 5:
            raise ValueError(f"a pose is (x, y, z, yaw, pitch), got {pose!r}.")
        pose = tuple(float(v) for v in pose)
        self._release_all()
        self._send_pose(pose)
        return self._arrive(pose)

    def _send_pose(self, pose: Pose) -> None:
        x, y, z, yaw, pitch = pose
        self._state = self.game.command(f"pose {x} {y} {z} {yaw} {pitch}")
        self._pitch = math.degrees(pitch)

    def _arrive(self, pose: Pose, tries: int = 5) -> np.ndarray:
        """Settle, and teleport again until the settled pose is the asked one: a player still
        moving when teleported (released keys, a fall) carries a little momentum past it."""
        for _ in range(tries):
            frame, s = self.settle(), self._state
            if np.abs(s.pos - np.asarray(pose[:3], np.float32)).max() < 1e-4 and \
                    abs(_wrap(s.yaw - pose[3])) < 1e-4 and abs(s.pitch - pose[4]) < 1e-4:
                return frame
            self._send_pose(pose)
        raise MinetestError(f"the player did not stay at {tuple(pose)} (last seen at {s.pos.tolist()}): is the pose "
                            "inside a wall or above a drop?")

    def set_nodes(self, nodes: Sequence[tuple[int, int, int, str]]) -> None:
        """Set nodes (x, y, z, name), e.g. ``(3, 9, 0, "wool:red")``; ``"air"`` removes one. Undone at reset."""
        for x, y, z, name in nodes:
            if not isinstance(name, str) or not name or any(c.isspace() for c in name):
                raise ValueError(f"node name {name!r} is not valid: give an item name such as 'wool:red' or 'air'.")
        self._state = self.game.command(*(f"node {int(x)} {int(y)} {int(z)} {name}" for x, y, z, name in nodes))

    def settle(self, timeout: float = 15.0, tolerance: float = 0.002, checks: int = 8) -> np.ndarray:
        """Wait until the view stops changing; returns the observation. Still = at most a
        ``tolerance`` share of the window's pixels differs between frames 0.1 s apart, ``checks``
        times in a row (animated water never stops entirely). After a teleport the sky and the
        light take about a second to reach their final colours (a grey level or two over the whole
        view), and a first visit keeps drawing far terrain for a while after it looks still."""
        t0, calm, last = time.monotonic(), 0, self.game.grab()
        while calm < checks:
            if time.monotonic() - t0 > timeout:
                raise MinetestError(f"the view did not settle within {timeout} s (raise timeout or tolerance).")
            time.sleep(0.1)
            frame = self.game.grab()
            calm = calm + 1 if (frame != last).any(-1).mean() <= tolerance else 0
            last = frame
        time.sleep(0.15)  # let the pose reach the server's report
        self._state = self.game.state()
        self._frame = resize_frame(last, self.frame_size)
        return self._frame

    # ------------------------------------------------------------------ gymnasium
    def _release_all(self) -> None:
        with self._inputs:
            self._release_held()

    def _release_held(self) -> None:  # with self._inputs held
        for k in self._held:
            self.game.key(k, False)
        if self._digging:
            self.game.button(False)
        self._held, self._digging = set(), False
        self.game.flush()

    def _tree_starts(self) -> list[Pose]:
        self.game.command(f"start {int(self.start_radius)}")
        state = self.game._wait_for(lambda: (s := self.game.state()) is not None and s.starts is not None and s,
                                    "the search for trees near the spawn point")
        if not state.starts:
            raise MinetestError(f"no tree stands within {self.start_radius} nodes of this world's spawn point: "
                                "raise start_radius or choose another world_seed.")
        return state.starts[: self.num_starts]

    def _calibrate_camera(self) -> None:
        """Measure one camera step's turn and correct the pointer move to give ``camera_step``."""
        before = self.game.state().yaw
        self.game.look(self._camera_px, 0)
        self.game.flush()
        turned = 0.0
        for _ in range(40):
            time.sleep(0.05)
            turned = math.degrees(abs(_wrap(before - self.game.state().yaw)))
            if turned > 0:
                time.sleep(0.2)
                turned = math.degrees(abs(_wrap(before - self.game.state().yaw)))
                break
        if not 0.5 * self.camera_step < turned < 2 * self.camera_step:
            raise MinetestError(f"the camera turned {turned:.2f} degrees for a {self.camera_step}-degree step: the "
                                "game did not take the pointer (is another X client grabbing it?).")
        self._camera_px = max(1, round(self._camera_px * self.camera_step / turned))
        self._calibrated = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._release_all()
        pose = (options or {}).get("pose")
        if pose is None:
            if self._starts is None:
                self._starts = self._tree_starts()
            pose = self._starts[int(self.np_random.integers(len(self._starts)))]
        if len(pose) != 5:
            raise ValueError(f"options['pose'] must be (x, y, z, yaw, pitch), got {pose!r}.")
        pose = tuple(float(v) for v in pose)
        x, y, z, yaw, pitch = pose
        self.game.command(f"reset {x} {y} {z} {yaw} {pitch}")
        self.settle()
        if not self._calibrated:
            self._calibrate_camera()
        self._arrive(pose)
        self._steps, self._wood = 0, self._state.wood
        self._pitch = math.degrees(pitch)  # counted here: the server's report lags the camera
        self._deadline = time.monotonic()
        return self._frame, self._info()

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space} (see env.unwrapped.action_meanings).")
        _, keys, dig, (pitch, yaw) = ACTIONS[int(action)]
        with self._inputs:
            self._last_step = time.monotonic()
            for k in self._held - set(keys):
                self.game.key(k, False)
            for k in set(keys) - self._held:
                self.game.key(k, True)
            self._held = set(keys)
            if dig != self._digging:
                self.game.button(dig)
                self._digging = dig
            if pitch and abs(self._pitch + pitch * self.camera_step) > self.pitch_limit + 1e-6:
                pitch = 0  # at the limit: the camera does not tilt further
            self._pitch += pitch * self.camera_step
            if pitch or yaw:
                self.game.look(yaw * self._camera_px, pitch * self._camera_px)
            self.game.flush()
        self._deadline += 1.0 / self.control_hz
        now = time.monotonic()
        if self._deadline > now:
            time.sleep(self._deadline - now)
        else:  # running late (a slow machine): do not try to catch up with a burst of short steps
            self._deadline = now
        self.game._check_alive()
        with self._inputs:
            self._frame = resize_frame(self.game.grab(), self.frame_size)
            self._last_step = time.monotonic()
        self._state = self.game.state() or self._state
        reward = float(self._state.wood - self._wood)
        self._wood = self._state.wood
        self._steps += 1
        truncated = self._steps >= self.max_episode_steps
        if truncated:
            self._release_all()
        return self._frame, reward, False, truncated, self._info()

    def _info(self) -> dict[str, Any]:
        s = self._state
        kind = POINTED_KINDS.index(s.pointed_kind) if s.pointed_kind in POINTED_KINDS else len(POINTED_KINDS) - 1
        return {STATE_PREFIX + "pos": s.pos.astype(np.float32), STATE_PREFIX + "yaw": np.float32(s.yaw),
                STATE_PREFIX + "pitch": np.float32(s.pitch),
                STATE_PREFIX + "pointed_pos": s.pointed_pos.astype(np.float32),
                STATE_PREFIX + "pointed_kind": np.int32(kind), STATE_PREFIX + "wood": np.int32(s.wood)}

    def render(self):
        return None if self._frame is None else self._frame.copy()

    def close(self) -> None:
        if getattr(self, "game", None) is not None:
            self._finalizer()
        super().close()
