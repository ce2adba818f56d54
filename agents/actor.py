"""A saved agent as a function ``actor(obs) -> action``, with the frame stack it was trained on.

PPO learns from the last ``frame_stack`` frames, stacked on the channel axis, because one frame
holds no motion (where the ball is going, which way a boxer moves). Training stacks them with
SB3's ``VecFrameStack`` (:func:`stack_frames`); everything that plays a saved agent afterwards,
the real-game scoring, the dream return, the loop's next collection, goes through
:class:`AgentActor`, which keeps the same stack per game, cleared at every episode start, exactly
as ``VecFrameStack`` does (zeros, then the frames of this episode), so an agent plays the real
game with the inputs it learned from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from einops import rearrange


def stack_frames(venv, frame_stack: int):
    """``venv`` (an SB3 VecEnv of channels-last frames) with its last ``frame_stack`` observations
    stacked on the channel axis; unchanged for ``frame_stack=1``."""
    if frame_stack == 1:
        return venv
    from stable_baselines3.common.vec_env import VecFrameStack

    return VecFrameStack(venv, frame_stack, channels_order="last")


class AgentActor:
    """``actor(obs)``: one frame (h, w, c) -> one action, or a batch (n, h, w, c) -> (n,) actions.

    Call :meth:`reset` before a new set of games and :meth:`episode_done` when game ``i`` of a
    batch starts over; both clear that game's frame stack."""

    def __init__(self, policy, frame_stack: int = 1, deterministic: bool = False) -> None:
        if frame_stack < 1:
            raise ValueError(f"frame_stack must be >= 1, got {frame_stack}.")
        self.policy, self.frame_stack, self.deterministic = policy, frame_stack, deterministic
        self.stack: np.ndarray | None = None  # (n, h, w, c * frame_stack), the newest frame last

    @classmethod
    def from_file(cls, path: str | Path, env: Any | None = None, where: str = "the env", deterministic: bool = False,
                  device: str | torch.device = "cpu") -> "AgentActor":
        """The agent file's policy; checked against ``env``'s spaces (one frame, not the stack) when given."""
        from worldsim.agents.agent_file import load_policy_record

        policy, record = load_policy_record(path, device, env, where)
        return cls(policy, int(record.get("frame_stack", 1)), deterministic)

    @classmethod
    def for_frames(cls, path: str | Path, frame_shape, num_actions: int, where: str, deterministic: bool = False):
        """The agent file's actor, checked to play frames of ``frame_shape`` with ``num_actions`` actions."""
        from types import SimpleNamespace

        spaces = SimpleNamespace(observation_space=gym.spaces.Box(0, 255, tuple(frame_shape), np.uint8),
                                 action_space=gym.spaces.Discrete(int(num_actions)))
        return cls.from_file(path, spaces, where, deterministic)

    def reset(self) -> None:
        self.stack = None

    def episode_done(self, index: int) -> None:
        if self.stack is not None:
            self.stack[index] = 0

    def _stacked(self, frames: np.ndarray) -> np.ndarray:
        n, c = frames.shape[0], frames.shape[-1]
        if self.stack is None or self.stack.shape[0] != n or self.stack.shape[1:-1] != frames.shape[1:-1]:
            self.stack = np.zeros((*frames.shape[:-1], c * self.frame_stack), dtype=frames.dtype)
        self.stack = np.roll(self.stack, -c, axis=-1)
        self.stack[..., -c:] = frames
        return self.stack

    def __call__(self, obs: np.ndarray) -> np.ndarray | int:
        obs = np.asarray(obs)
        single = obs.ndim == 3
        frames = rearrange(obs, "h w c -> 1 h w c") if single else obs
        x = self._stacked(frames) if self.frame_stack > 1 else frames
        actions = self.policy.predict(x, deterministic=self.deterministic)[0]
        return int(actions[0]) if single else np.asarray(actions, dtype=np.int64)
