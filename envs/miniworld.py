"""MiniWorld 3D navigation tasks (Farama ``miniworld``), rendered headless through pyglet/OpenGL.

* Any MiniWorld task registered with Gymnasium can be named, as ``task="MiniWorld-OneRoom-v0"``
  or, shorter, ``task="OneRoom"`` (case-insensitive; the ``MiniWorld-`` prefix and ``-v0`` suffix
  are optional).
  worldsim registers one of its own, ``MiniWorld-WallWalk-v0`` (``envs/miniworld_tasks.py``).
* ``entity_pixels(i)``: the pixels entity ``i`` contributes to the current view (rendered again
  without it): ground truth for the consistency probes.
* Observation: the agent's first-person view, ``uint8`` RGB ``(h, w, 3)``, rendered by OpenGL
  directly at ``frame_size`` (default 64×64) rather than resized afterwards.
* Actions: ``Discrete(n)`` with the task's own ``n`` (most tasks: ``turn_left``, ``turn_right``,
  ``move_forward``); names in ``env.unwrapped.action_meanings``, taken from MiniWorld's
  ``Actions`` enum (``turn_left, turn_right, move_forward, move_back, pickup, drop, toggle, done``).
  In ``Sign`` action 3 both steps back and ends the episode (MiniWorld's own quirk).
* ``motion``: per action, ``(forward metres, turn degrees)`` of the camera (the task's
  ``forward_step`` and ``turn_step``; no domain randomisation is used, so they are exact): the
  odometry of the world model's pose memory (``worldsim/models/memory.py``), recorded in the store.
* Episodes end when the task says so (``terminated``) or after ``max_episode_steps`` steps
  (``truncated``; ``None`` keeps the task's own limit, which is infinite for ``RoomObjects``).
* Seeding: ``reset(seed=s)`` seeds this env's ``np_random``, from which each reset draws the
  world-generation seed, so one seed fixes every episode that follows.

Ground truth in ``info`` (from ``reset`` and ``step``), flat numeric arrays with shapes fixed for
the whole episode (``E`` = entities present at reset, the agent excluded):

=========================  ============  =====================================================
key                        shape, dtype  meaning
=========================  ============  =====================================================
``state/agent_pos``        (3,) f32      agent position ``(x, y, z)``; ``y`` is up, floor is 0
``state/agent_dir``        () f32        agent heading in radians, wrapped to ``[-π, π)``;
                                         0 faces ``+x``, positive turns towards ``-z``
``state/entity_pos``       (E, 3) f32    entity positions (a carried object moves with the agent)
``state/entity_type``      (E,) i32      index into :data:`ENTITY_TYPES`
``state/entity_color``     (E, 3) f32    RGB in [0, 1] of boxes, balls and keys; 0 for others
``state/entity_present``   (E,) f32      1 while the entity is in the world; 0 once a task has
                                         removed it (``PickupObjects``), its position then frozen
``state/<key>``            ()            extra entries of a dict observation (``Sign``: ``goal``)
=========================  ============  =====================================================

Rendering needs OpenGL. Without a display, pyglet renders through EGL when ``PYGLET_HEADLESS`` is
set, which this module does (``setdefault``) before importing pyglet. On Debian/Ubuntu install
``xvfb libosmesa6 libegl1 libgl1-mesa-dri``.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import math
import os
from typing import Any

import gymnasium as gym
import numpy as np

from worldsim.envs.common import STATE_PREFIX, parse_frame_size, resize_frame, rgb_space

logger = logging.getLogger(__name__)

# Entity class names; ``state/entity_type`` indexes this tuple. An entity takes the first name
# found along its class hierarchy (so Sign's ``BigKey`` is a ``Key``); "Entity" is anything else.
ENTITY_TYPES: tuple[str, ...] = ("Entity", "Box", "Ball", "Key", "MeshEnt", "ImageFrame", "TextFrame")
_ENTITY_INDEX = {name: i for i, name in enumerate(ENTITY_TYPES)}

_INSTALL_HINT = (
    'Install it with `pip install "worldsim[miniworld]"`; headless rendering also needs the system '
    "packages `xvfb libosmesa6 libegl1 libgl1-mesa-dri` (apt-get install ...)."
)

# MiniWorld compiles every task's static geometry into OpenGL display list 1, and pyglet makes all
# contexts share one object space: building or resetting a second env overwrites the first env's
# walls. Remember which adapter compiled the list last and recompile before rendering another.
_adapter_ids = itertools.count()
_display_list_owner: int | None = None


def _import_miniworld():
    os.environ.setdefault("PYGLET_HEADLESS", "True")
    try:
        import miniworld  # noqa: F401  (registers the MiniWorld-* ids with gymnasium)

        from worldsim.envs.miniworld_tasks import register

        register()  # worldsim's own tasks (MiniWorld-WallWalk-v0)
    except ImportError as e:
        raise ImportError(f"MiniWorld is not installed ({e}). {_INSTALL_HINT}") from e
    except Exception as e:  # pyglet fails at import when it finds no display / no GL
        raise RuntimeError(
            f"MiniWorld could not open an OpenGL context ({type(e).__name__}: {e}). {_INSTALL_HINT} "
            "Alternatively run under a virtual display: `xvfb-run -a python ...` with PYGLET_HEADLESS unset."
        ) from e
    return miniworld


def available_tasks() -> list[str]:
    _import_miniworld()
    return sorted(env_id for env_id in gym.registry if env_id.startswith("MiniWorld-"))


def _resolve_task(task: str, tasks: list[str]) -> str | None:
    wanted = task.lower().removeprefix("miniworld-").removesuffix("-v0")
    for env_id in tasks:
        if env_id.lower().removeprefix("miniworld-").removesuffix("-v0") == wanted:
            return env_id
    return None


def _entity_color(ent: Any) -> np.ndarray:
    """RGB in [0, 1]: a Box's rendered ``color_vec``; a Ball or Key's colour from its mesh name."""
    from miniworld.entity import COLORS, MeshEnt
    from miniworld.objmesh import ObjMesh

    if getattr(ent, "color_vec", None) is not None:
        return np.asarray(ent.color_vec, dtype=np.float32)
    if getattr(ent, "color", None) in COLORS:
        return COLORS[ent.color].astype(np.float32)
    if isinstance(ent, MeshEnt):  # Ball and Key keep no colour attribute: their mesh is "ball_red"
        for path, mesh in ObjMesh.cache.items():
            if mesh is ent.mesh:
                color = os.path.splitext(os.path.basename(path))[0].rsplit("_", 1)[-1]
                if color in COLORS:
                    return COLORS[color].astype(np.float32)
    return np.zeros(3, dtype=np.float32)


def _entity_type(ent: Any) -> int:
    for cls in type(ent).__mro__:
        if cls.__name__ in _ENTITY_INDEX:
            return _ENTITY_INDEX[cls.__name__]
    return _ENTITY_INDEX["Entity"]


class MiniWorldEnv(gym.Env[np.ndarray, np.int64]):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 30, "realtime": False}

    def __init__(
        self,
        task: str = "MiniWorld-OneRoom-v0",
        frame_size: int | tuple[int, int] = 64,
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        _import_miniworld()
        tasks = available_tasks()
        task_id = _resolve_task(str(task), tasks)
        if task_id is None:
            raise ValueError(
                f"Unknown MiniWorld task {task!r}. miniworld registers: {', '.join(tasks)}. "
                "Pass one of them, e.g. env.task=MiniWorld-OneRoom-v0."
            )
        if max_episode_steps is not None and (isinstance(max_episode_steps, bool) or int(max_episode_steps) < 1):
            raise ValueError(
                "max_episode_steps must be a positive integer or None (the task's own limit), "
                f"got {max_episode_steps!r}."
            )
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r} is not supported; use 'rgb_array' or None.")
        self.task = task_id
        self.frame_size = parse_frame_size(frame_size)
        self.render_mode = render_mode
        self._env = self._make_task(task_id, self.frame_size)
        if max_episode_steps is not None:
            self._env.max_episode_steps = int(max_episode_steps)  # read by MiniWorld's step()
        self.max_episode_steps: float = self._env.max_episode_steps
        n = int(self._env.action_space.n)
        self.action_meanings: list[str] = [a.name for a in self._env.actions][:n]
        self.action_space = gym.spaces.Discrete(n)
        self.observation_space = rgb_space(self.frame_size)
        fwd = float(self._env.params.sample(None, "forward_step"))
        turn = float(self._env.params.sample(None, "turn_step"))
        moves = {"move_forward": (fwd, 0.0), "move_back": (-fwd, 0.0), "turn_left": (0.0, turn), "turn_right": (0.0, -turn)}
        self.motion: list[tuple[float, float]] = [moves.get(m, (0.0, 0.0)) for m in self.action_meanings]
        self._id = next(_adapter_ids)
        self._entities: list[Any] = []
        self._entity_type = np.zeros(0, dtype=np.int32)
        self._entity_color = np.zeros((0, 3), dtype=np.float32)
        self._entity_pos = np.zeros((0, 3), dtype=np.float32)
        self._last_obs: np.ndarray | None = None

    @staticmethod
    def _make_task(task_id: str, size: tuple[int, int]) -> Any:
        h, w = size
        # The human-view frame buffer (800×600, multisampled) is never shown here: shrink it.
        kwargs = {"obs_width": w, "obs_height": h, "window_width": w, "window_height": h}
        out = io.StringIO()  # MiniWorld prints "Falling back to num_samples=4" on most GL drivers
        with contextlib.redirect_stdout(out):
            try:
                env = gym.make(task_id, disable_env_checker=True, **kwargs).unwrapped
            except TypeError:  # a task that does not forward the size arguments: resize instead
                env = gym.make(task_id, disable_env_checker=True).unwrapped
        if out.getvalue().strip():
            logger.debug("miniworld: %s", out.getvalue().strip())
        global _display_list_owner
        _display_list_owner = None  # constructing the task ran reset() and recompiled the list
        return env

    # -- observation and ground truth ---------------------------------------------------------

    def _frame(self, obs: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        extras: dict[str, np.ndarray] = {}
        if isinstance(obs, dict):  # Sign returns {"obs": frame, "goal": int}
            extras = {STATE_PREFIX + k: np.asarray(v) for k, v in obs.items() if k != "obs"}
            obs = obs["obs"]
        return resize_frame(np.asarray(obs, dtype=np.uint8), self.frame_size), extras

    def _snapshot_entities(self) -> None:
        env = self._env
        self._entities = [e for e in env.entities if e is not env.agent]
        self._entity_type = np.array([_entity_type(e) for e in self._entities], dtype=np.int32)
        self._entity_color = np.zeros((len(self._entities), 3), dtype=np.float32)
        for i, ent in enumerate(self._entities):
            self._entity_color[i] = _entity_color(ent)
        self._entity_pos = np.zeros((len(self._entities), 3), dtype=np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        env = self._env
        in_world = {id(e) for e in env.entities}
        present = np.array([id(e) in in_world for e in self._entities], dtype=np.float32)
        for i, ent in enumerate(self._entities):
            if present[i]:
                self._entity_pos[i] = np.asarray(ent.pos, dtype=np.float32)
        heading = (float(env.agent.dir) + math.pi) % (2 * math.pi) - math.pi
        return {
            "state/agent_pos": np.asarray(env.agent.pos, dtype=np.float32).copy(),
            "state/agent_dir": np.asarray(heading, dtype=np.float32),
            "state/entity_pos": self._entity_pos.copy(),
            "state/entity_type": self._entity_type.copy(),
            "state/entity_color": self._entity_color.copy(),
            "state/entity_present": present,
        }

    def _own_display_list(self) -> None:
        global _display_list_owner
        if _display_list_owner != self._id:
            self._env.shadow_window.switch_to()
            self._env._render_static()
            _display_list_owner = self._id

    # -- gymnasium API --------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        global _display_list_owner
        super().reset(seed=seed)
        # MiniWorld generates the world from its own generator; seed it from ours.
        obs, _ = self._env.reset(seed=int(self.np_random.integers(0, 2**31 - 1)))
        _display_list_owner = self._id  # reset() compiled this world's static geometry
        self._snapshot_entities()
        self._last_obs, extras = self._frame(obs)
        return self._last_obs, {**self._state(), **extras}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(
                f"Action {action!r} is outside the action space {self.action_space} of {self.task} "
                f"(actions: {self.action_meanings})."
            )
        self._own_display_list()
        obs, reward, terminated, truncated, _ = self._env.step(int(action))
        self._last_obs, extras = self._frame(obs)
        info = {**self._state(), **extras}
        return self._last_obs, float(reward), bool(terminated), bool(truncated), info

    def entity_pixels(self, entity: int) -> np.ndarray:
        """Ground truth for probes: bool (h, w), the pixels that entity ``entity`` (an index of
        ``state/entity_*``) contributes to the current view, found by rendering the view again without
        it. Empty when it is out of view or hidden behind a wall, whatever its colour looks like."""
        self._own_display_list()
        env, ent = self._env, self._entities[entity]
        with_it = self._frame(env.render_obs())[0]
        if ent not in env.entities:  # picked up / removed: contributes nothing
            return np.zeros(with_it.shape[:2], dtype=bool)
        at = env.entities.index(ent)
        env.entities.remove(ent)
        try:
            without = self._frame(env.render_obs())[0]
        finally:
            env.entities.insert(at, ent)
        return np.abs(with_it.astype(np.int16) - without.astype(np.int16)).max(-1) > 0

    def render(self):
        if self.render_mode == "rgb_array":
            return self._last_obs
        return None

    def close(self):
        global _display_list_owner
        env = getattr(self, "_env", None)
        if env is None:
            return
        env.close()
        if getattr(env, "shadow_window", None) is not None:
            env.shadow_window.close()  # each task holds a hidden pyglet window (a GL context)
            env.shadow_window = None
        if _display_list_owner == self._id:
            _display_list_owner = None
        self._env = None
