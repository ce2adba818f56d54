"""One recorded episode: frames, the actions between them, rewards and episode ends.

Indexing convention (the same everywhere in worldsim): ``frames[i]`` is what the agent saw before
taking ``actions[i]``; ``frames[i + 1]``, ``rewards[i]``, ``terminated[i]`` and ``truncated[i]`` are
what that action led to. An episode of ``t`` steps therefore holds ``t + 1`` frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


class EpisodeFormatError(ValueError):
    """An episode whose arrays do not fit together (shapes, dtypes, lengths)."""


@dataclass
class Episode:
    frames: np.ndarray  # (t+1, h, w, 3) uint8
    actions: np.ndarray  # (t,) int64
    rewards: np.ndarray  # (t,) float32
    terminated: np.ndarray  # (t,) bool
    truncated: np.ndarray  # (t,) bool
    state: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (t+1, ...) ground truth
    timestamps: np.ndarray | None = None  # (t+1,) float64 seconds, for real-time envs
    meta: dict[str, Any] = field(default_factory=dict)  # seed, policy, worker, ...

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return tuple(self.frames.shape[1:])  # type: ignore[return-value]

    def validate(self) -> "Episode":
        t = len(self)
        if self.frames.dtype != np.uint8 or self.frames.ndim != 4 or self.frames.shape[-1] != 3:
            raise EpisodeFormatError(
                f"frames must be uint8 (t+1, h, w, 3); got {self.frames.dtype} {self.frames.shape}."
            )
        if self.frames.shape[0] != t + 1:
            raise EpisodeFormatError(f"an episode of {t} actions needs {t + 1} frames, got {self.frames.shape[0]}.")
        for name in ("rewards", "terminated", "truncated"):
            arr = getattr(self, name)
            if arr.shape != (t,):
                raise EpisodeFormatError(f"{name} must have shape ({t},), got {arr.shape}.")
        if self.actions.ndim != 1 or not np.issubdtype(self.actions.dtype, np.integer):
            raise EpisodeFormatError(f"actions must be integer (t,), got {self.actions.dtype} {self.actions.shape}.")
        if t > 0 and (self.terminated[:-1].any() or self.truncated[:-1].any()):
            raise EpisodeFormatError("only the last step of an episode may be terminated or truncated.")
        for key, arr in self.state.items():
            if arr.shape[0] != t + 1:
                raise EpisodeFormatError(f"state {key!r} must have one row per frame ({t + 1}), got {arr.shape}.")
        if self.timestamps is not None and self.timestamps.shape != (t + 1,):
            raise EpisodeFormatError(f"timestamps must have shape ({t + 1},), got {self.timestamps.shape}.")
        return self


class EpisodeBuilder:
    """Accumulates one episode step by step (used by the recorder and importers)."""

    def __init__(self, first_frame: np.ndarray, first_state: dict[str, np.ndarray] | None = None,
                 timestamp: float | None = None, meta: dict[str, Any] | None = None) -> None:
        self.frames = [np.asarray(first_frame, dtype=np.uint8)]
        self.actions: list[int] = []
        self.rewards: list[float] = []
        self.terminated: list[bool] = []
        self.truncated: list[bool] = []
        self.state = {k: [np.asarray(v)] for k, v in (first_state or {}).items()}
        self.timestamps = None if timestamp is None else [timestamp]
        self.meta = dict(meta or {})

    def __len__(self) -> int:
        return len(self.actions)

    def add(self, action: int, frame: np.ndarray, reward: float, terminated: bool, truncated: bool,
            state: dict[str, np.ndarray] | None = None, timestamp: float | None = None) -> None:
        self.actions.append(int(action))
        self.frames.append(np.asarray(frame, dtype=np.uint8))
        self.rewards.append(float(reward))
        self.terminated.append(bool(terminated))
        self.truncated.append(bool(truncated))
        for k in self.state:
            self.state[k].append(np.asarray((state or {})[k]))
        if self.timestamps is not None:
            self.timestamps.append(float(timestamp if timestamp is not None else np.nan))

    def build(self, cut: bool = False) -> Episode:
        """Finish the episode; ``cut=True`` marks an episode stopped early by the recorder as truncated."""
        truncated = list(self.truncated)
        if cut and truncated and not (self.terminated[-1] or truncated[-1]):
            truncated[-1] = True
        return Episode(
            frames=np.stack(self.frames),
            actions=np.asarray(self.actions, dtype=np.int64),
            rewards=np.asarray(self.rewards, dtype=np.float32),
            terminated=np.asarray(self.terminated, dtype=bool),
            truncated=np.asarray(truncated, dtype=bool),
            state={k: np.stack(v) for k, v in self.state.items()},
            timestamps=None if self.timestamps is None else np.asarray(self.timestamps, dtype=np.float64),
            meta={**self.meta, "cut_by_recorder": bool(cut)},
        ).validate()
