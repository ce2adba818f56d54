"""Crafter (Hafner 2021): a procedurally generated 2D survival world with 22 achievements.

* Observation: the top-down local view (``view`` tiles, default 9×9, the bottom rows showing the
  inventory), ``uint8`` RGB ``(h, w, 3)`` drawn by crafter directly at ``frame_size`` (default
  64×64). Crafter draws whole tiles, so a frame size that is not a multiple of the view leaves a
  black border of a few pixels.
* Actions: ``Discrete(17)``, names in ``env.unwrapped.action_meanings`` (``crafter.constants.actions``:
  ``noop, move_left, move_right, move_up, move_down, do, sleep, place_stone, place_table,
  place_furnace, place_plant, make_wood_pickaxe, make_stone_pickaxe, make_iron_pickaxe,
  make_wood_sword, make_stone_sword, make_iron_sword``).
* Reward (``reward=True``): +1 the first time each achievement is unlocked in an episode, ±0.1 per
  health point gained or lost; ``reward=False`` gives 0 (the achievements still count).
* ``terminated`` when the player dies; ``truncated`` after ``length`` steps (10,000 by default,
  the benchmark's setting; ``None`` for no limit).
* Seeding: ``reset(seed=s)`` seeds this env's ``np_random``, from which each reset draws the world
  seed, so one seed fixes the map, the creatures and every later episode.

Ground truth in ``info`` (from ``reset`` and ``step``), flat numeric arrays of fixed shapes:

==========================  ==========  =======================================================
key                         shape       meaning
==========================  ==========  =======================================================
``state/player_pos``        (2,) f32    player tile ``(x, y)`` in the ``area`` map
``state/player_facing``     (2,) f32    facing direction, one of ``(±1, 0), (0, ±1)``
``state/player_sleeping``   () f32      1 while asleep (the screen darkens)
``state/daylight``          () f32      daylight in [0, 1] (night darkens the frame)
``state/inventory``         (16,) f32   counts in the order of :data:`INVENTORY_KEYS`
                                        (health, food, drink and energy first)
``state/achievements``      (22,) f32   times each achievement was unlocked this episode, in
                                        the order of :data:`ACHIEVEMENTS`
==========================  ==========  =======================================================
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from worldsim.envs.common import parse_frame_size, rgb_space

# crafter 1.8's data.yaml, in its order; fixed here so that recorded arrays keep their meaning.
INVENTORY_KEYS: tuple[str, ...] = (
    "health", "food", "drink", "energy", "sapling", "wood", "stone", "coal", "iron", "diamond",
    "wood_pickaxe", "stone_pickaxe", "iron_pickaxe", "wood_sword", "stone_sword", "iron_sword",
)  # fmt: skip
ACHIEVEMENTS: tuple[str, ...] = (
    "collect_coal", "collect_diamond", "collect_drink", "collect_iron", "collect_sapling",
    "collect_stone", "collect_wood", "defeat_skeleton", "defeat_zombie", "eat_cow", "eat_plant",
    "make_iron_pickaxe", "make_iron_sword", "make_stone_pickaxe", "make_stone_sword",
    "make_wood_pickaxe", "make_wood_sword", "place_furnace", "place_plant", "place_stone",
    "place_table", "wake_up",
)  # fmt: skip


def _pair(value: int | tuple[int, int] | list[int], name: str, minimum: int) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in pair):
        raise ValueError(f"{name}={value!r} must be one integer or two integers, e.g. {name}=[64, 64].")
    if min(pair) < minimum:
        raise ValueError(f"{name}={value!r}: each entry must be >= {minimum}.")
    return int(pair[0]), int(pair[1])


class CrafterEnv(gym.Env[np.ndarray, np.int64]):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10, "realtime": False}

    def __init__(
        self,
        frame_size: int | tuple[int, int] = 64,
        area: tuple[int, int] = (64, 64),
        view: tuple[int, int] = (9, 9),
        length: int | None = 10_000,
        reward: bool = True,
        render_mode: str | None = None,
    ) -> None:
        try:
            import crafter
        except ImportError as e:
            raise ImportError(
                f'Crafter is not installed ({e}). Install it with `pip install "worldsim[crafter]"`.'
            ) from e

        self.frame_size = parse_frame_size(frame_size)
        self.view = _pair(view, "view", 3)
        self.area = _pair(area, "area", max(self.view))
        item_rows = -(-len(INVENTORY_KEYS) // self.view[0])  # crafter's inventory strip, in tiles
        if self.view[1] <= item_rows:
            raise ValueError(
                f"view={view!r} leaves no room for the world: the inventory takes {item_rows} rows of "
                f"{self.view[0]} tiles. Use a taller view, e.g. view=[9, 9]."
            )
        h, w = self.frame_size
        if w < self.view[0] or h < self.view[1]:
            raise ValueError(
                f"frame_size={frame_size!r} is smaller than the view of {self.view[0]}×{self.view[1]} tiles "
                "(crafter draws at least one pixel per tile). Use frame_size >= the view, e.g. 64."
            )
        if length is not None and (isinstance(length, bool) or int(length) < 1):
            raise ValueError(f"length must be a positive number of steps or None (no limit), got {length!r}.")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r} is not supported; use 'rgb_array' or None.")
        if list(crafter.constants.items) != list(INVENTORY_KEYS) or list(crafter.constants.achievements) != list(
            ACHIEVEMENTS
        ):
            raise RuntimeError(
                "This crafter version changed its items or achievements; worldsim.envs.crafter lists "
                "crafter 1.8's. Install crafter==1.8.3 or update INVENTORY_KEYS / ACHIEVEMENTS."
            )
        self.length = None if length is None else int(length)
        self.reward = bool(reward)
        self.render_mode = render_mode
        # The world seed is set on every reset (see reset); 0 here only avoids crafter drawing
        # one from numpy's global generator.
        self._env = crafter.Env(
            area=self.area, view=self.view, size=(w, h), reward=self.reward, length=self.length, seed=0
        )
        self.action_meanings: list[str] = list(crafter.constants.actions)
        self.action_space = gym.spaces.Discrete(len(self.action_meanings))
        self.observation_space = rgb_space(self.frame_size)
        self._last_obs: np.ndarray | None = None

    def _state(self) -> dict[str, np.ndarray]:
        player = self._env._player
        return {
            "state/player_pos": np.asarray(player.pos, dtype=np.float32),
            "state/player_facing": np.asarray(player.facing, dtype=np.float32),
            "state/player_sleeping": np.asarray(player.sleeping, dtype=np.float32),
            "state/daylight": np.asarray(self._env._world.daylight, dtype=np.float32),
            "state/inventory": np.array([player.inventory.get(k, 0) for k in INVENTORY_KEYS], dtype=np.float32),
            "state/achievements": np.array([player.achievements.get(k, 0) for k in ACHIEVEMENTS], dtype=np.float32),
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        # crafter seeds episode k's world with hash((self._seed, k)); restart its count at a seed
        # drawn from our generator so that the episode depends on np_random alone.
        self._env._seed = int(self.np_random.integers(0, 2**31 - 1))
        self._env._episode = 0
        self._last_obs = np.ascontiguousarray(self._env.reset())
        return self._last_obs, self._state()

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(
                f"Action {action!r} is outside the action space {self.action_space} of Crafter "
                f"(actions: {self.action_meanings})."
            )
        obs, reward, done, info = self._env.step(int(action))
        terminated = info["discount"] == 0.0  # crafter's discount is 0 exactly when the player died
        truncated = bool(done) and not terminated
        self._last_obs = np.ascontiguousarray(obs)
        return self._last_obs, float(reward), bool(terminated), truncated, self._state()

    def render(self):
        if self.render_mode == "rgb_array":
            return self._last_obs
        return None

    def close(self):
        pass
