"""Behaviour policies for recording gameplay: batched, seeded, numpy in and out.

* ``random``: a uniform action every step.
* ``sticky_random``: a uniform action held for a uniform number of steps in
  ``[min_hold, max_hold]`` (1-9 by default). Held actions move the agent across the screen and let
  effects play out, so a world model sees far more of the state space than under per-step uniform
  noise, which mostly jitters in place.
* ``agent``: a trained agent acting on the observations, given as ``actor(obs) -> actions`` by the
  caller, with probability ``epsilon`` replaced by a uniform action (the exploration of the Atari
  100k world-model agents: DIAMOND and IRIS collect with epsilon = 0.01) (the command line loads it from an agent file, :mod:`worldsim.agents.agent_file`: this
  stage does not know how agents are stored).
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np


class Policy(Protocol):
    def act(self, obs: np.ndarray) -> np.ndarray:  # (n, h, w, c) uint8 -> (n,) int64
        ...

    def episode_done(self, index: int) -> None:  # sub-env ``index`` started a new episode
        ...


class RandomPolicy:
    def __init__(self, num_actions: int, num_envs: int, seed: int = 0) -> None:
        self.num_actions, self.num_envs = num_actions, num_envs
        self.rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.rng.integers(0, self.num_actions, size=self.num_envs, dtype=np.int64)

    def episode_done(self, index: int) -> None:
        pass


class StickyRandomPolicy(RandomPolicy):
    def __init__(self, num_actions: int, num_envs: int, seed: int = 0, min_hold: int = 1, max_hold: int = 9) -> None:
        super().__init__(num_actions, num_envs, seed)
        if not 1 <= min_hold <= max_hold:
            raise ValueError(f"sticky_random needs 1 <= min_hold <= max_hold, got {min_hold}, {max_hold}.")
        self.min_hold, self.max_hold = min_hold, max_hold
        self.current = np.zeros(num_envs, dtype=np.int64)
        self.left = np.zeros(num_envs, dtype=np.int64)

    def act(self, obs: np.ndarray) -> np.ndarray:
        new = self.left <= 0
        k = int(new.sum())
        if k:
            self.current[new] = self.rng.integers(0, self.num_actions, size=k)
            self.left[new] = self.rng.integers(self.min_hold, self.max_hold + 1, size=k)
        self.left -= 1
        return self.current.copy()

    def episode_done(self, index: int) -> None:
        self.left[index] = 0


class AgentPolicy:
    """A trained agent: ``actor`` maps a batch of observations (n, h, w, c) to actions (n,); each
    action is replaced by a uniform one with probability ``epsilon`` (seeded)."""

    def __init__(self, actor: Callable[[np.ndarray], np.ndarray], num_envs: int, num_actions: int,
                 epsilon: float = 0.0, seed: int = 0) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"policy.epsilon must be in [0, 1], got {epsilon}.")
        self.actor, self.num_envs, self.num_actions, self.epsilon = actor, num_envs, num_actions, epsilon
        self.rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray) -> np.ndarray:
        actions = np.asarray(self.actor(obs), dtype=np.int64).reshape(self.num_envs)
        explore = self.rng.random(self.num_envs) < self.epsilon
        return np.where(explore, self.rng.integers(0, self.num_actions, self.num_envs), actions)

    def episode_done(self, index: int) -> None:
        pass


def make_policy(name: str, num_actions: int, num_envs: int, seed: int, **kwargs) -> Policy:
    if name == "random":
        return RandomPolicy(num_actions, num_envs, seed)
    if name == "sticky_random":
        return StickyRandomPolicy(num_actions, num_envs, seed, int(kwargs.get("min_hold", 1)), int(kwargs.get("max_hold", 9)))
    if name == "agent":
        if not callable(kwargs.get("actor")):
            raise ValueError("policy=agent needs the agent: on the command line policy.path=/path/to/agent.json "
                             "(an agent file written by `worldsim train-agent`).")
        return AgentPolicy(kwargs["actor"], num_envs, num_actions, float(kwargs.get("epsilon", 0.0)), seed)
    raise ValueError(f"Unknown policy {name!r}: use random, sticky_random or agent (with policy.path=...).")
