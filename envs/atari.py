"""Atari 2600 games through the Arcade Learning Environment.

Two protocols, as presets (``configs/env/``):

* **Atari 100k** (``env=atari100k env.kwargs.game=NAME``): the settings DIAMOND and IRIS report
  under (their ``config/env``: ``{Game}NoFrameskip-v4``, i.e. no sticky actions; frame skip 4 with
  a max-pool of the last two frames; 1–30 random no-ops at reset; the minimal action set; 64×64
  RGB; life loss ends an episode in training only; at most 108,000 frames = 27,000 agent steps per
  episode). Budget: 100k agent steps (400k frames) of real interaction. Scores under it may stand
  beside the published Atari 100k figures (``worldsim.envs.atari_scores``).
* **Sticky actions** (``env=boxing|pong|breakout|atari``): the same, but sticky actions with
  probability 0.25 applied by the emulator every frame (Machado et al. 2018) and no no-ops; the
  world-model benchmarks use it. Scores under it are never put beside Atari 100k figures.

The options: frame skip (the observation is the pixel-wise max of the last two emulator frames,
which removes the flicker of sprites drawn on alternate frames); ``repeat_action_probability``;
frames resized to ``frame_size`` (default 64×64) RGB with area interpolation;
``terminal_on_life_loss`` (a training signal: :func:`worldsim.envs.scoring_kwargs` turns it off
for scoring, which always plays full games); the game's minimal action set by default, or all 18
actions with ``full_action_space=True``; ``noop_max``: 1..noop_max no-op actions after reset
(gymnasium's ``AtariPreprocessing`` convention; 0 = none); episodes truncated after
``max_episode_steps`` agent steps (27,000 = 108,000 frames, 30 minutes).

Any game whose ROM ships inside ``ale-py`` can be named, as ``game="boxing"`` or ``game="Boxing"``.
"""

from __future__ import annotations

import re
from typing import Any

import gymnasium as gym
import numpy as np

from worldsim.envs.common import parse_frame_size, resize_frame, rgb_space


def _snake(name: str) -> str:
    name = name.removeprefix("ALE/").split("-v")[0]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() if not name.islower() else name


def available_games() -> list[str]:
    import ale_py.roms

    return sorted(ale_py.roms.get_all_rom_ids())


class AtariEnv(gym.Env[np.ndarray, np.int64]):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 15, "realtime": False}

    def __init__(
        self,
        game: str = "boxing",
        frame_size: int | tuple[int, int] = 64,
        frame_skip: int = 4,
        repeat_action_probability: float = 0.25,
        full_action_space: bool = False,
        terminal_on_life_loss: bool = False,
        noop_max: int = 0,
        max_episode_steps: int = 27_000,
        render_mode: str | None = None,
    ) -> None:
        from ale_py.env import AtariEnv as ALEEnv

        game_id = _snake(game)
        games = available_games()
        if game_id not in games:
            raise ValueError(
                f"Unknown Atari game {game!r}. ale-py ships these ROMs: {', '.join(games)}. "
                "Pass one of them, e.g. env.kwargs.game=boxing."
            )
        if frame_skip < 1:
            raise ValueError(f"frame_skip must be >= 1, got {frame_skip}.")
        if not 0.0 <= repeat_action_probability <= 1.0:
            raise ValueError(f"repeat_action_probability must be in [0, 1], got {repeat_action_probability}.")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r} is not supported; use 'rgb_array' or None.")
        self.game = game_id
        self.frame_size = parse_frame_size(frame_size)
        self.frame_skip = int(frame_skip)
        self.terminal_on_life_loss = bool(terminal_on_life_loss)
        self.noop_max = int(noop_max)
        self.max_episode_steps = int(max_episode_steps)
        self.render_mode = render_mode
        # The emulator steps one frame at a time; skipping and pooling happen here.
        self._ale_env = ALEEnv(
            game=game_id,
            frameskip=1,
            repeat_action_probability=float(repeat_action_probability),
            full_action_space=bool(full_action_space),
        )
        self.ale = self._ale_env.ale
        self._action_set = list(self._ale_env._action_set)
        self.action_meanings: list[str] = self._ale_env.get_action_meanings()
        self.action_space = gym.spaces.Discrete(len(self._action_set))
        self.observation_space = rgb_space(self.frame_size)
        raw_shape = self.ale.getScreenRGB().shape
        self._screens = np.zeros((2, *raw_shape), dtype=np.uint8)
        self._lives = 0
        self._steps = 0
        self._last_obs: np.ndarray | None = None

    def _observe(self) -> np.ndarray:
        pooled = np.maximum(self._screens[0], self._screens[1])
        return resize_frame(pooled, self.frame_size)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        # ALE keeps its own generator (sticky actions); seed it from ours so one seed fixes both.
        self._ale_env.reset(seed=int(self.np_random.integers(0, 2**31 - 1)))
        noops = int(self.np_random.integers(1, self.noop_max + 1)) if self.noop_max > 0 else 0
        for _ in range(noops):
            self.ale.act(self._action_set[0])
            if self.ale.game_over():
                self._ale_env.reset()
        self.ale.getScreenRGB(self._screens[0])
        self._screens[1] = self._screens[0]
        self._lives = self.ale.lives()
        self._steps = 0
        self._last_obs = self._observe()
        return self._last_obs, {"lives": self._lives}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(
                f"Action {action!r} is outside the action space {self.action_space} of {self.game} "
                f"(actions: {self.action_meanings})."
            )
        ale_action = self._action_set[int(action)]
        reward = 0.0
        game_over = False
        pooled_second = False
        for i in range(self.frame_skip):
            reward += self.ale.act(ale_action)
            if self.ale.game_over():
                game_over = True
                break
            if i == self.frame_skip - 2:
                self.ale.getScreenRGB(self._screens[0])
                pooled_second = True
        self.ale.getScreenRGB(self._screens[1])
        if not pooled_second:  # frame_skip 1, or the game ended early: no second frame to pool
            self._screens[0] = self._screens[1]
        self._steps += 1
        lives = self.ale.lives()
        life_lost = lives < self._lives
        self._lives = lives
        terminated = game_over or (self.terminal_on_life_loss and life_lost)
        truncated = (not terminated) and self._steps >= self.max_episode_steps
        self._last_obs = self._observe()
        return self._last_obs, float(reward), terminated, truncated, {"lives": lives}

    def clone_state(self) -> tuple:
        """The whole state of the game now (emulator, lives, step count, last screens), for
        :meth:`restore_state`: play several policies from the same moment. Without sticky actions
        what follows depends on the actions only."""
        return self.ale.cloneState(), self._lives, self._steps, self._screens.copy(), self._last_obs.copy()

    def restore_state(self, state: tuple) -> np.ndarray:
        """Return to a state of :meth:`clone_state`; gives its observation."""
        ale_state, self._lives, self._steps, screens, obs = state
        self.ale.restoreState(ale_state)
        self._screens[:] = screens
        self._last_obs = obs.copy()
        return self._last_obs

    def render(self):
        if self.render_mode == "rgb_array":
            return self._last_obs
        return None

    def close(self):
        self._ale_env.close()
