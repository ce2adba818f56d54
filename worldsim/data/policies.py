"""Behaviour policies for recording gameplay: batched, seeded, numpy in and out.

* ``random``: a uniform action every step.
* ``sticky_random``: a uniform action held for a uniform number of steps in
  ``[min_hold, max_hold]`` (1-9 by default). Held actions move the agent across the screen and let
  effects play out, so a world model sees far more of the state space than under per-step uniform
  noise, which mostly jitters in place.
* ``agent``: a saved stable-baselines3 agent (``.zip``), acting on the observations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

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


class SB3Policy:
    """A saved stable-baselines3 agent; the algorithm is read from the file (PPO, A2C, DQN)."""

    def __init__(self, path: str | Path, num_envs: int, deterministic: bool = False, seed: int = 0) -> None:
        import stable_baselines3 as sb3

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"No saved agent at {path}. Train one with `worldsim train-agent` or fix policy.path.")
        errors = []
        for algo in (sb3.PPO, sb3.A2C, sb3.DQN):
            try:
                self.model = algo.load(path, device="cpu")
                break
            except Exception as e:  # noqa: BLE001 - try the next algorithm
                errors.append(f"{algo.__name__}: {e}")
        else:
            raise ValueError(f"{path} is not a stable-baselines3 PPO/A2C/DQN agent:\n  " + "\n  ".join(errors))
        self.model.set_random_seed(seed)
        self.deterministic = deterministic
        self.num_envs = num_envs

    def act(self, obs: np.ndarray) -> np.ndarray:
        actions, _ = self.model.predict(obs, deterministic=self.deterministic)
        return np.asarray(actions, dtype=np.int64).reshape(self.num_envs)

    def episode_done(self, index: int) -> None:
        pass


def make_policy(name: str, num_actions: int, num_envs: int, seed: int, **kwargs) -> Policy:
    if name == "random":
        return RandomPolicy(num_actions, num_envs, seed)
    if name == "sticky_random":
        return StickyRandomPolicy(num_actions, num_envs, seed, int(kwargs.get("min_hold", 1)), int(kwargs.get("max_hold", 9)))
    if name == "agent":
        if not kwargs.get("path") or kwargs.get("path") == "???":
            raise ValueError("policy=agent needs policy.path=/path/to/agent.zip (a stable-baselines3 save).")
        return SB3Policy(kwargs["path"], num_envs, bool(kwargs.get("deterministic", False)), seed)
    raise ValueError(f"Unknown policy {name!r}: use random, sticky_random or agent (with policy.path=...).")
