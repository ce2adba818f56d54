"""Play inside the dream with the keyboard (``worldsim play``), and record the play as training data.

    worldsim play checkpoint=runs/boxing/small/world_model.pt record_dir=data/boxing_human

Two layers. :class:`PlaySession` is the game without a window: the dream (a
:class:`~worldsim.sim.dream_env.DreamEnv`, a batch of one) and, when it can be built, the real env
the checkpoint was trained on (``make_env`` with the checkpoint's env record), driven by commands:
an action index, ``"toggle_real"``, ``"pause"``, ``"step"``, ``"reset"``, ``"more_steps"``,
``"fewer_steps"``, ``"quit"``; it needs no pygame. :func:`worldsim.sim.play_window.run_play` is
the pygame front end: a window (SDL's dummy video driver works, so it runs headless), held keys
turned into actions by :mod:`worldsim.sim.keymaps`, a text overlay, a target frame rate, and an
optional script of key events instead of a keyboard.

What "switch from the same moment" means
----------------------------------------
Both worlds run side by side and every action steps both. An episode starts on the real env
(``reset(seed)`` then ``C - 1`` no-ops) and the dream starts from those ``C`` real frames and the
actions between them (``reset(options={"context_frames": ..., "context_actions": ...})``), so at
step 0 both are at the same moment of the same game. TAB switches which one you play:

* real -> dream: the dream restarts from the last ``C`` real frames and actions, so it goes on from
  exactly where the real game is (state included, up to the tokenizer's reconstruction).
* dream -> real: an emulator cannot be put in a state the dream made up, so the real env you land
  in is the one that has *shadowed* the dream since the dream's last start: the same steps and the
  same actions, but its own state. Same moment in time and action history; the picture differs by
  as much as the dream has drifted. The other world is always shown small beside yours.

When the dream's end head fires, the dream restarts from the real frames of that moment (with no
real env: from a recorded context); when the real episode ends, both start the next episode.

Recording: only real transitions are training data (dream frames are not gameplay). With a real env
and a ``record_dir``, the *real* episode goes into that episode store (created with the env's
metadata, as ``worldsim collect`` does; an existing store must be of the same env): every real step,
including the ``C - 1`` no-ops of the start and the steps played while watching the dream (counted in
the episode's ``meta``), written atomically when the episode ends, on reset and on quit (then cut as
truncated, like ``collect``'s episodes in flight). Without a real env (not installed, no display, no
ROM) the session plays the dream only, records nothing and says so. Pause holds both worlds, except
that a real-time env (MineRL) keeps running on its server.
"""

from __future__ import annotations

import json
import time
from collections import deque
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from worldsim.data.episode import EpisodeBuilder
from worldsim.data.store import EpisodeStore
from worldsim.envs import make_env
from worldsim.envs.common import STATE_PREFIX, env_metadata
from worldsim.sim.dream_env import DreamEnv
from worldsim.sim.keymaps import keymap_for

MAX_SAMPLING_STEPS = 8
DREAM_HORIZON = 10**9  # in play the dream never truncates by itself; episodes end as described above
COMMANDS = ("toggle_real", "pause", "step", "reset", "more_steps", "fewer_steps", "quit")
START_ATTEMPTS = 10


def _state(info: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k[len(STATE_PREFIX):]: np.asarray(v) for k, v in info.items() if k.startswith(STATE_PREFIX)}


def make_real_env(env_meta: dict[str, Any]) -> tuple[gym.Env | None, str]:
    """The real env of a checkpoint's env record, or None and why it cannot be built here."""
    name, kwargs = env_meta["env"], dict(env_meta.get("env_kwargs", {}))
    try:
        env = make_env(name, **kwargs)
    except Exception as e:  # not installed, no ROM, no display, no Java: the dream alone is still playable
        return None, f"The real env {name} {kwargs} cannot be built here ({type(e).__name__}: {e}); playing the dream only."
    have = env_metadata(env, name, kwargs)
    diffs = [f"{k}: real env {have[k]!r}, checkpoint {env_meta.get(k)!r}"  # (json: tuples and lists alike)
             for k in ("frame_shape", "num_actions", "action_meanings")
             if json.dumps(have[k]) != json.dumps(env_meta.get(k))]
    if diffs:
        env.close()
        raise ValueError(f"The real env {name} {kwargs} no longer matches the world model's checkpoint ("
                         + "; ".join(diffs) + "). Play with real=false (the dream only), or retrain on this env.")
    return env, ""


class PlaySession:
    """The dream (and the real env, when there is one) played by commands; see the module docstring."""

    def __init__(self, dream: DreamEnv, real: gym.Env | None = None, store: EpisodeStore | None = None,
                 seed: int = 0, note: str = "", checkpoint: str = "") -> None:
        core = dream.core
        self.dream, self.real, self.store, self.seed, self.checkpoint = dream, real, store, int(seed), str(checkpoint)
        self.env_meta = dict(core.ckpt["env"])
        self.keymap = keymap_for(self.env_meta["env"], core.action_meanings)
        self.C = core.C
        self.idle = self.keymap.noop if self.keymap.noop is not None else 0  # the actions of an episode's start
        self.warmup_steps = self.C - 1 if real is not None else 0  # real steps played before the dream starts
        self.realtime = bool(self.env_meta.get("realtime", False))
        self.mode, self.paused, self.done = "dream", False, False
        self.action = self.idle  # the last action chosen (what "step" plays)
        self.episode = self.steps = self.total_steps = 0  # episodes started; steps of this one; steps in all
        self.returns = {"real": 0.0, "dream": 0.0}
        self.frames: dict[str, np.ndarray] = {}  # "real" / "dream" -> current frame (h, w, 3) uint8
        self.written: list[Path] = []
        self.message = note
        self._builder: EpisodeBuilder | None = None
        self._ctx_frames: deque[np.ndarray] = deque(maxlen=self.C)
        self._ctx_actions: deque[int] = deque(maxlen=self.C - 1)
        self._dream_steps = 0
        self.reset()

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, record_dir: str | Path | None = None,
                        data_dir: str | Path | None = None, seed: int = 0, sampling_steps: int | None = None,
                        real: bool = True, end_threshold: float = 0.5, device: str = "cpu",
                        precision: str = "auto") -> "PlaySession":
        """Load the world model, build its real env (if ``real`` and possible) and the recording store."""
        if sampling_steps is not None and not 1 <= int(sampling_steps) <= MAX_SAMPLING_STEPS:
            raise ValueError(f"sampling_steps must be 1..{MAX_SAMPLING_STEPS} (or null for the model's default), "
                             f"got {sampling_steps}.")
        dream = DreamEnv(checkpoint, data_dir=data_dir, horizon=DREAM_HORIZON, sampling_steps=sampling_steps,
                         end_threshold=end_threshold, device=device, precision=precision)
        meta = dream.core.ckpt["env"]
        env, note = make_real_env(meta) if real else (None, "real=false: playing the dream only.")
        store = None
        try:
            if record_dir is not None and env is None:
                note += f" Recording nothing into {record_dir}: only real play is training data."
            elif record_dir is not None:
                store = EpisodeStore.create(record_dir, env_metadata(env, meta["env"], dict(meta.get("env_kwargs", {}))))
                store.check_compatible(meta, what=f"the world model {checkpoint}")
            return cls(dream, env, store, seed, note.strip(), str(checkpoint))
        except BaseException:
            dream.close()
            if env is not None:
                env.close()
            raise

    # ------------------------------------------------------------------ commands
    def handle(self, command: int | str) -> bool:
        """Apply one command (see :data:`COMMANDS`, or an action index); True if the worlds stepped.

        An action index is the action held this tick: it steps both worlds unless paused (then it is
        only remembered, for ``"step"``). A session that has quit ignores everything.
        """
        if self.done:
            return False
        if isinstance(command, (int, np.integer)) and not isinstance(command, bool):
            if not 0 <= int(command) < len(self.keymap.action_meanings):
                raise ValueError(f"action {command} is outside 0..{len(self.keymap.action_meanings) - 1} "
                                 f"({', '.join(self.keymap.action_meanings)}).")
            self.action = int(command)
            if self.paused:
                return False
            self._step(self.action)
            return True
        if command == "step":
            self._step(self.action)
            return True
        if command == "pause":
            self.paused = not self.paused
        elif command == "toggle_real":
            self._toggle()
        elif command == "reset":
            self.reset()
            self.message = f"reset: episode {self.episode}"
        elif command in ("more_steps", "fewer_steps"):
            if self.dream.core.model.cfg.edm.shortcut_levels:  # a shortcut model samples with 1, 2, 4, ... steps
                n = self.sampling_steps
                self.sampling_steps = min(2 * n, self.dream.core.model.cfg.edm.shortcut_levels) \
                    if command == "more_steps" else max(n // 2, 1)
            else:
                self.sampling_steps += 1 if command == "more_steps" else -1
        elif command == "quit":
            self.close()
        else:
            raise ValueError(f"unknown play command {command!r}: use an action index or one of {', '.join(COMMANDS)}.")
        return False

    @property
    def sampling_steps(self) -> int:
        core = self.dream.core
        return core.sampling_steps if core.sampling_steps is not None else core.model.cfg.edm.sampling_steps

    @sampling_steps.setter
    def sampling_steps(self, n: int) -> None:  # the dream's denoiser steps per frame, clamped to 1..8
        self.dream.core.sampling_steps = min(max(int(n), 1), MAX_SAMPLING_STEPS)

    def reset(self, seed: int | None = None) -> None:
        """Start the next episode (seed ``seed + episode`` unless given); the running one is written, cut."""
        self._finish(cut=True)
        seed = self.seed + self.episode if seed is None else int(seed)
        self.episode += 1
        self.steps = self._dream_steps = 0
        self.returns = {"real": 0.0, "dream": 0.0}
        if self.real is None:
            self.frames["dream"] = self.dream.reset(seed=seed)[0]
            return
        for attempt in range(START_ATTEMPTS):  # the C - 1 idle steps could end an episode: start again
            obs, info = self.real.reset(seed=seed + attempt * 100_003)
            self.frames["real"] = obs
            self._ctx_frames.clear()
            self._ctx_frames.append(obs)
            self._ctx_actions.clear()
            self._builder = None if self.store is None else EpisodeBuilder(
                obs, _state(info), time.time() if self.realtime else None,
                meta={"policy": "human", "recorded_by": "worldsim play", "reset_seed": seed + attempt * 100_003,
                      "checkpoint": self.checkpoint, "warmup_steps": self.warmup_steps})
            if not any(self._step_real(self.idle) for _ in range(self.warmup_steps)):
                break
        else:
            raise RuntimeError(f"every real episode ended within its first {self.warmup_steps} idle steps; "
                               "the dream cannot start from its real frames.")
        self.frames["dream"] = self.dream.reset(seed=seed, options=self._context())[0]

    def close(self) -> list[Path]:
        """Write the running real episode (cut as truncated), close both worlds; the paths written."""
        if not self.done:
            self._finish(cut=True)
            self.done = True
            self.dream.close()
            if self.real is not None:
                self.real.close()
        return self.written

    # ------------------------------------------------------------------ the two worlds
    def _context(self) -> dict[str, np.ndarray]:
        return {"context_frames": np.stack(self._ctx_frames),
                "context_actions": np.asarray(self._ctx_actions, dtype=np.int64)}

    def _step_real(self, action: int) -> bool:
        obs, reward, terminated, truncated, info = self.real.step(action)
        self.frames["real"] = obs
        self.returns["real"] += float(reward)
        self._ctx_frames.append(obs)
        if self.C > 1:
            self._ctx_actions.append(int(action))
        if self._builder is not None:
            self._builder.add(action, obs, float(reward), terminated, truncated, _state(info),
                              time.time() if self.realtime else None)
        return bool(terminated or truncated)

    def _step(self, action: int) -> None:
        real_ended = self.real is not None and self._step_real(action)
        obs, reward, terminated, truncated, _ = self.dream.step(action)
        self.frames["dream"] = obs
        self.returns["dream"] += reward
        self.steps += 1
        self.total_steps += 1
        self._dream_steps += self.mode == "dream"
        if real_ended:
            steps, path = self.steps, self._finish(cut=False)
            self.reset()
            self.message = (f"the real episode ended after {steps} steps"
                            + (f" (written: {path.name})" if path else "") + f"; episode {self.episode}")
        elif terminated or truncated:
            self._restart_dream("the dream's end head fired")

    def _restart_dream(self, why: str) -> None:
        if self.real is not None:
            self.frames["dream"] = self.dream.reset(options=self._context())[0]
            self.message = f"{why}: the dream restarts from the real frames of this moment"
        else:
            self.frames["dream"] = self.dream.reset()[0]
            self.message = f"{why}: the dream restarts from a recorded context"

    def _toggle(self) -> None:
        if self.real is None:
            self.message = "no real env in this session: dream only"
            return
        self.mode = "real" if self.mode == "dream" else "dream"
        if self.mode == "dream":
            self._restart_dream("switched to the dream")
        else:
            self.message = "switched to the real env (it shadowed the dream: same steps, same actions)"

    def _finish(self, cut: bool) -> Path | None:
        builder, self._builder = self._builder, None
        if builder is None or self.store is None or self.steps == 0:  # nothing played: nothing to keep
            return None
        builder.meta["steps_played_in_dream"] = int(self._dream_steps)
        path = self.store.write(builder.build(cut=cut))
        self.written.append(path)
        return path

    # ------------------------------------------------------------------ what the screen says
    def status_lines(self) -> list[str]:
        head = (f"{self.mode.upper()}{'  PAUSED' if self.paused else ''}  episode {self.episode}  step {self.steps}"
                f"  return {self.returns[self.mode]:+.1f}  sampling steps {self.sampling_steps}")
        if self.real is None:
            rec = "dream only (no real env): recording nothing"
        else:
            rec = (f"return real {self.returns['real']:+.1f} / dream {self.returns['dream']:+.1f}; "
                   + (f"recording real play to {self.store.root} ({len(self.written)} written)" if self.store
                      else "not recording (record_dir=null)"))
        return [head, rec] + ([self.message] if self.message else []) + self.keymap.help_lines()
