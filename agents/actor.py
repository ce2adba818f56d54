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


def stack_frames(venv, frame_stack: int, channels_order: str = "last"):
    """``venv`` (an SB3 VecEnv of channels-last frames, or of channels-first latents with
    ``channels_order="first"``) with its last ``frame_stack`` observations stacked on the channel
    axis; unchanged for ``frame_stack=1``."""
    if frame_stack == 1:
        return venv
    from stable_baselines3.common.vec_env import VecFrameStack

    return VecFrameStack(venv, frame_stack, channels_order=channels_order)


class AgentActor:
    """``actor(obs)``: one frame (h, w, c) -> one action, or a batch (n, h, w, c) -> (n,) actions.

    A latent agent (:mod:`worldsim.agents.latent`) plays either the latent dream, whose observations
    are channels-first latents (c, h, w), or real frames through ``encoder`` (a
    :class:`~worldsim.agents.latent.LatentEncoder`), which turns them into the same latents first.

    Call :meth:`reset` before a new set of games and :meth:`episode_done` when game ``i`` of a
    batch starts over; both clear that game's frame stack."""

    def __init__(self, policy, frame_stack: int = 1, deterministic: bool = False, encoder=None,
                 channels_first: bool = False) -> None:
        if frame_stack < 1:
            raise ValueError(f"frame_stack must be >= 1, got {frame_stack}.")
        self.policy, self.frame_stack, self.deterministic = policy, frame_stack, deterministic
        self.encoder = encoder
        self.channels_first = channels_first or encoder is not None  # latents are (c, h, w)
        self.stack: np.ndarray | None = None  # (n, ..., c * frame_stack) or (n, c * frame_stack, ...), newest last

    @classmethod
    def from_file(cls, path: str | Path, env: Any | None = None, where: str = "the env", deterministic: bool = False,
                  device: str | torch.device = "cpu", world_model: str | Path | None = None) -> "AgentActor":
        """The agent file's policy; checked against ``env``'s spaces (one frame, not the stack) when given.
        A latent agent given real frames (``env`` of frames, or no ``env``) plays them through the
        tokenizer of ``world_model`` (default: the world model its record names)."""
        from worldsim.agents.agent_file import AgentFileError, check_spaces, load_policy_record, space_record

        policy, record = load_policy_record(path, device)
        stack = int(record.get("frame_stack", 1))
        if record.get("observation", "pixels") != "latent":
            if env is not None:
                check_spaces(record, env.observation_space, env.action_space, where)
            return cls(policy, stack, deterministic)
        from worldsim.agents.latent import LatentEncoder, latent_space

        if env is not None and env.observation_space.dtype == np.float32:  # the latent dream itself
            check_spaces(record, env.observation_space, env.action_space, where)
            return cls(policy, stack, deterministic, channels_first=True)
        encoder = LatentEncoder(world_model or record.get("world_model", ""), device)
        if record["observation_space"] != space_record(latent_space(encoder.latent_shape)):
            raise AgentFileError(
                f"{path} is a latent agent for latents {record['observation_space']['shape']}, and the tokenizer "
                f"of {encoder.path} gives {list(encoder.latent_shape)}: play it through the world model it was "
                f"trained in ({record.get('world_model')}).")
        if env is not None:
            check_spaces({**record, "observation_space": space_record(encoder.frame_space)}, env.observation_space,
                         env.action_space, where)
        return cls(policy, stack, deterministic, encoder=encoder)

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
        axis = 1 if self.channels_first else -1  # VecFrameStack's channels_order "first" / "last"
        c = frames.shape[axis]
        shape = list(frames.shape)
        shape[axis] = c * self.frame_stack
        if self.stack is None or list(self.stack.shape) != shape:
            self.stack = np.zeros(shape, dtype=frames.dtype)
        self.stack = np.roll(self.stack, -c, axis=axis)
        newest = [slice(None)] * self.stack.ndim
        newest[axis] = slice(-c, None)
        self.stack[tuple(newest)] = frames
        return self.stack

    def __call__(self, obs: np.ndarray) -> np.ndarray | int:
        obs = np.asarray(obs)
        single = obs.ndim == 3
        frames = rearrange(obs, "h w c -> 1 h w c") if single else obs
        if self.encoder is not None:
            frames = self.encoder(frames)  # (n, h, w, 3) uint8 -> (n, c, h', w') latents
        x = self._stacked(frames) if self.frame_stack > 1 else frames
        actions = self.policy.predict(x, deterministic=self.deterministic)[0]
        return int(actions[0]) if single else np.asarray(actions, dtype=np.int64)
