"""Conventions every worldsim real-environment adapter follows.

An adapter is a ``gymnasium.Env`` whose

* observation is a ``uint8`` RGB frame ``(h, w, 3)`` (``frame_size`` configurable, default 64×64);
* action space is ``Discrete(n)``, with human-readable names in ``env.unwrapped.action_meanings``;
* ``metadata["realtime"]`` says whether the world keeps running between ``step`` calls
  (``False`` for emulators that advance only when stepped; ``True`` for servers such as Minecraft
  or Minetest, whose episodes record wall-clock ``timestamps``);
* ``info`` may carry ground-truth state as flat numeric arrays under ``"state/<name>"`` keys;
  the recorder stores those beside the frames (the consistency benchmarks read them).

The helpers here are the only code adapters share: frame resizing and the metadata record that the
episode store keeps for each dataset.
"""

from __future__ import annotations

from typing import Any

import cv2
import gymnasium as gym
import numpy as np

STATE_PREFIX = "state/"


def parse_frame_size(frame_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """Normalise ``frame_size`` to ``(height, width)`` and validate it."""
    if isinstance(frame_size, int):
        size = (frame_size, frame_size)
    else:
        size = tuple(int(s) for s in frame_size)
    if len(size) != 2 or min(size) < 8 or max(size) > 1024:
        raise ValueError(
            f"frame_size={frame_size!r} is not valid: give one integer (square frames) or "
            "[height, width], each between 8 and 1024, e.g. frame_size=64."
        )
    return size  # type: ignore[return-value]


def resize_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an RGB ``(h, w, 3)`` uint8 frame to ``size=(h, w)`` with area interpolation.

    Area interpolation averages the source pixels under each target pixel, so small sprites (the
    Pong ball is 2×4 source pixels) fade instead of vanishing as nearest-neighbour would let them.
    """
    if frame.shape[:2] == tuple(size):
        return np.ascontiguousarray(frame)
    return cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def rgb_space(size: tuple[int, int]) -> gym.spaces.Box:
    return gym.spaces.Box(0, 255, (size[0], size[1], 3), np.uint8)


def env_metadata(env: gym.Env, env_name: str, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The record of an environment that the episode store keeps and that checkpoints carry."""
    obs_space = env.observation_space
    act_space = env.action_space
    if not isinstance(act_space, gym.spaces.Discrete):
        raise TypeError(f"worldsim adapters expose Discrete actions; {env_name} has {act_space}.")
    meanings = list(getattr(env.unwrapped, "action_meanings", [str(i) for i in range(int(act_space.n))]))
    meta = {
        "env": env_name,
        "env_kwargs": dict(env_kwargs),
        "frame_shape": [int(s) for s in obs_space.shape],
        "num_actions": int(act_space.n),
        "action_meanings": meanings,
        "realtime": bool(env.metadata.get("realtime", False)),
    }
    motion = getattr(env.unwrapped, "motion", None)
    if motion is not None:  # camera motion per action, for pose memory (worldsim/models/memory.py)
        meta["motion"] = [[float(f), float(t)] for f, t in motion]
    return meta
