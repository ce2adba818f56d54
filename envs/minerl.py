"""Minecraft through MineRL (0.4.x tasks such as ``MineRLTreechop-v0``, or MineRL 1.0 / VPT tasks).

* Any task id MineRL registers with (old) ``gym`` can be named: MineRL 0.4 ``MineRLTreechop-v0``,
  ``MineRLNavigate[Extreme][Dense]-v0``, ``MineRLObtainDiamond[Dense]-v0``,
  ``MineRLObtainIronPickaxe[Dense]-v0``; MineRL 1.0 ``MineRLBasaltFindCave-v0``,
  ``MineRLBasaltMakeWaterfall-v0``, ``MineRLBasaltCreateVillageAnimalPen-v0``,
  ``MineRLBasaltBuildVillageHouse-v0``.
* Observation: MineRL's ``pov`` (``uint8`` RGB, 64×64 in 0.4 tasks, 360×640 in 1.0 tasks),
  resized to ``frame_size`` (default 64×64) with area interpolation.
* Actions: ``Discrete(18)``, the set of :mod:`worldsim.envs.minerl_actions` (names in
  ``env.unwrapped.action_meanings``), turned into a full MineRL action dict with every key the
  task has (others no-op; ``camera`` a ``float32`` array ``[pitch, yaw]`` of ±``camera_step``
  degrees).
* Episodes: MineRL uses the old ``gym`` API, ``reset() -> obs`` and
  ``step() -> (obs, reward, done, info)``. ``done`` becomes ``terminated``, except when old gym's
  ``TimeLimit`` wrapper flags ``info["TimeLimit.truncated"]``, which becomes ``truncated``; the
  adapter's own ``max_episode_steps`` (``None``: only the task's limit) also truncates.
* Real time: Minecraft runs on its own server and keeps ticking at 20 Hz
  (``metadata["realtime"] = True``), so recorded episodes carry wall-clock timestamps.
* Ground truth: the other entries of MineRL's observation dict (``inventory``, ``compass``,
  ``equipped_items`` …) go to ``info`` as ``"state/<key>"`` float32 arrays: a number as shape
  ``()``, a dict of numbers as a vector in the order of ``env.unwrapped.state_names[<key>]``
  (strings such as the equipped item's type are left out).
* Seeding: ``reset(seed=s)`` seeds this env's ``np_random``; every later reset then draws the
  Minecraft world seed from it and passes it to MineRL's ``env.seed`` (MineRL 0.4 has it), so one
  seed fixes the worlds of all following episodes. Without a seed MineRL picks worlds itself.

MineRL needs a Java 8 JDK and builds Minecraft when installed; see ``docs/minecraft.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from worldsim.envs.common import STATE_PREFIX, parse_frame_size, resize_frame, rgb_space
from worldsim.envs.minerl_actions import (
    DEFAULT_CAMERA_STEP,
    NUM_ACTIONS,
    action_meanings,
    check_camera_step,
    discrete_to_minerl,
)

ENV_NAME = "minerl"

INSTALL_HINT = (
    "MineRL needs a Java 8 JDK and builds Minecraft while it installs:\n"
    "  1. install Java 8: `sudo apt-get install openjdk-8-jdk` (Debian/Ubuntu) and make it the default\n"
    "     (`java -version` must print 1.8);\n"
    '  2. `pip install "worldsim[minecraft]"` (MineRL 0.4.4: `pip install minerl==0.4.4`), or for the\n'
    "     MineRL 1.0 / VPT tasks `pip install git+https://github.com/minerllabs/minerl`;\n"
    "  3. on a machine without a display, run under `xvfb-run -a`.\n"
    "See docs/minecraft.md."
)


class MineRLUnavailableError(ImportError, RuntimeError):
    """MineRL (or its old ``gym``) cannot be imported or cannot start Minecraft."""


def minerl_env_metadata(task: str = "MineRLTreechop-v0", frame_size: int | tuple[int, int] = 64,
                        camera_step: float = DEFAULT_CAMERA_STEP) -> dict[str, Any]:
    """The store metadata of ``MineRLEnv(task, frame_size, camera_step)``, without starting MineRL.

    Equal to ``envs.common.env_metadata(env, "minerl", {"task", "frame_size", "camera_step"})`` of a
    live adapter, so stores imported from recordings and recorded live are compatible.
    """
    size = parse_frame_size(frame_size)
    return {
        "env": ENV_NAME,
        "env_kwargs": {"task": task, "frame_size": frame_size, "camera_step": float(check_camera_step(camera_step))},
        "frame_shape": [size[0], size[1], 3],
        "num_actions": NUM_ACTIONS,
        "action_meanings": action_meanings(camera_step),
        "realtime": bool(MineRLEnv.metadata["realtime"]),
    }


def _make_gym_env(task: str):
    """Build a MineRL task through old ``gym`` (imports MineRL lazily)."""
    try:
        import gym as old_gym
        import minerl  # noqa: F401  (registers the MineRL* ids with old gym)
    except ImportError as e:
        raise MineRLUnavailableError(f"MineRL is not installed ({e}).\n{INSTALL_HINT}") from e
    try:
        return old_gym.make(task)
    except old_gym.error.Error as e:  # unknown id
        raise ValueError(f"MineRL does not know the task {task!r} ({e}). Use e.g. task=MineRLTreechop-v0.") from e


def _action_keys(space: Any) -> list[str]:
    spaces = getattr(space, "spaces", None)
    keys = list(spaces.keys()) if isinstance(spaces, Mapping) else list(getattr(space, "keys", lambda: [])())
    if "camera" not in keys:
        raise TypeError(f"this does not look like a MineRL action space (no 'camera' key): {space}.")
    return keys


def _numeric_leaves(value: Any, prefix: str = "") -> list[tuple[str, float]]:
    if isinstance(value, Mapping):
        out: list[tuple[str, float]] = []
        for k in sorted(value):
            out += _numeric_leaves(value[k], f"{prefix}.{k}" if prefix else str(k))
        return out
    arr = np.asarray(value)
    if arr.size == 1 and (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        return [(prefix, float(arr.reshape(-1)[0]))]
    return []


class MineRLEnv(gym.Env[np.ndarray, np.int64]):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 20, "realtime": True}

    def __init__(
        self,
        task: str = "MineRLTreechop-v0",
        frame_size: int | tuple[int, int] = 64,
        camera_step: float = DEFAULT_CAMERA_STEP,
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        _make_minerl_env: Callable[[], Any] | None = None,
    ) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r} is not supported; use 'rgb_array' or None.")
        if max_episode_steps is not None and int(max_episode_steps) < 1:
            raise ValueError(f"max_episode_steps must be >= 1 or None, got {max_episode_steps}.")
        self.task = task
        self.frame_size = parse_frame_size(frame_size)
        self.camera_step = check_camera_step(camera_step)
        self.max_episode_steps = None if max_episode_steps is None else int(max_episode_steps)
        self.render_mode = render_mode
        self._env = _make_minerl_env() if _make_minerl_env is not None else _make_gym_env(task)
        self._keys = _action_keys(self._env.action_space)
        self.action_meanings: list[str] = action_meanings(self.camera_step)
        self.action_space = gym.spaces.Discrete(NUM_ACTIONS)
        self.observation_space = rgb_space(self.frame_size)
        self.state_names: dict[str, list[str]] = {}
        self._seeded = False
        self._steps = 0
        self._last_obs: np.ndarray | None = None
        self._closed = False

    # ------------------------------------------------------------------ conversions
    def _observe(self, obs: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if not isinstance(obs, Mapping) or "pov" not in obs:
            raise TypeError(f"MineRL observations are dicts with a 'pov' image; got {type(obs).__name__}.")
        pov = np.asarray(obs["pov"])
        if pov.dtype != np.uint8:
            pov = np.clip(pov, 0, 255).astype(np.uint8)
        frame = resize_frame(pov, self.frame_size)
        state = {}
        for key, value in obs.items():
            if key == "pov":
                continue
            leaves = _numeric_leaves(value)
            if not leaves:
                continue
            if isinstance(value, Mapping):
                self.state_names[key] = [name for name, _ in leaves]
                state[STATE_PREFIX + key] = np.array([v for _, v in leaves], dtype=np.float32)
            else:
                state[STATE_PREFIX + key] = np.array(leaves[0][1], dtype=np.float32)
        return frame, state

    def minerl_action(self, action: int) -> dict[str, Any]:
        """The MineRL action dict that discrete ``action`` sends to this task."""
        return discrete_to_minerl(int(action), self._keys, self.camera_step)

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._seeded = self._seeded or seed is not None
        if self._seeded and hasattr(self._env, "seed"):
            # The world seed comes from our generator, so one reset seed fixes every later world.
            self._env.seed(int(self.np_random.integers(0, 2**31 - 1)))
        result = self._env.reset()
        obs = result[0] if isinstance(result, tuple) else result  # old gym: obs; newer: (obs, info)
        self._steps = 0
        self._last_obs, state = self._observe(obs)
        return self._last_obs, dict(state)

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(
                f"Action {action!r} is outside the action space {self.action_space} of MineRL "
                f"(actions: {self.action_meanings})."
            )
        result = self._env.step(self.minerl_action(int(action)))
        if len(result) == 5:  # a gymnasium-style env
            obs, reward, terminated, truncated, info = result
        else:  # MineRL's old gym API: (obs, reward, done, info)
            obs, reward, done, info = result
            truncated = bool(done) and bool((info or {}).get("TimeLimit.truncated", False))
            terminated = bool(done) and not truncated
        self._steps += 1
        if not terminated and self.max_episode_steps is not None and self._steps >= self.max_episode_steps:
            truncated = True
        self._last_obs, state = self._observe(obs)
        return self._last_obs, float(reward), bool(terminated), bool(truncated), dict(state)

    def render(self):
        if self.render_mode == "rgb_array":
            return self._last_obs
        return None

    def close(self):
        if not self._closed:
            self._closed = True
            self._env.close()
