"""Behaviour policies for recording gameplay: batched, seeded, numpy in and out.

* ``random``: a uniform action every step.
* ``sticky_random``: a uniform action held for a uniform number of steps in
  ``[min_hold, max_hold]`` (1-9 by default). Held actions move the agent across the screen and let
  effects play out, so a world model sees far more of the state space than under per-step uniform
  noise, which mostly jitters in place.
* ``revisit``: sticky-random segments mixed with *excursions* that come back: a few held,
  invertible actions (turn left, step forward, camera up, ...), then their inverses in reverse
  order, so the agent returns to where it was (exactly for turns; for moves unless a wall stopped
  it). World models of 3D worlds need such data to learn that what left the view comes back
  unchanged (the consistency probes, docs/consistency.md). Inverses come from the action names
  (left/right, forward/back, up/down swapped); actions without one (noop, pickup, attack) only
  appear in the sticky segments.
* ``agent``: a trained agent acting on the observations, given as ``actor(obs) -> actions`` by the
  caller, with probability ``epsilon`` replaced by a uniform action (the exploration of the Atari
  100k world-model agents: DIAMOND and IRIS collect with epsilon = 0.01) (the command line loads it from an agent file, :mod:`worldsim.agents.agent_file`: this
  stage does not know how agents are stored).
"""

from __future__ import annotations

import re
from typing import Callable, Protocol, Sequence

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


_SWAPS = {"left": "right", "right": "left", "forward": "back", "back": "forward", "up": "down", "down": "up",
          "LEFT": "RIGHT", "RIGHT": "LEFT", "UP": "DOWN", "DOWN": "UP"}


def inverse_actions(action_meanings: Sequence[str]) -> dict[int, int]:
    """Action index -> the index of the action that undoes it, by name (``turn_left`` <->
    ``turn_right``, ``camera_up_15`` <-> ``camera_down_15``, ``UPLEFT`` <-> ``DOWNRIGHT``), for the
    actions that have one in this set; no-ops and actions whose swapped name is absent are left out."""
    index = {m: i for i, m in enumerate(action_meanings)}
    out = {}
    for i, m in enumerate(action_meanings):
        swapped = re.sub("|".join(_SWAPS), lambda t: _SWAPS[t.group(0)], m)
        if swapped != m and swapped in index:
            out[i] = index[swapped]
    return out


class RevisitPolicy(StickyRandomPolicy):
    def __init__(self, num_actions: int, num_envs: int, seed: int, action_meanings: Sequence[str],
                 min_hold: int = 1, max_hold: int = 9, revisit_prob: float = 0.5, max_segments: int = 2) -> None:
        super().__init__(num_actions, num_envs, seed, min_hold, max_hold)
        if not 0.0 <= revisit_prob <= 1.0 or max_segments < 1:
            raise ValueError(f"revisit needs 0 <= revisit_prob <= 1 and max_segments >= 1, got {revisit_prob}, "
                             f"{max_segments}.")
        if len(action_meanings) != num_actions:
            raise ValueError(f"revisit got {len(action_meanings)} action names for {num_actions} actions.")
        self.inverse = inverse_actions(action_meanings)
        if revisit_prob > 0 and not self.inverse:
            raise ValueError(f"policy=revisit needs actions that undo each other (turn_left/turn_right, forward/back, "
                             f"...); this env has none: {list(action_meanings)}. Use policy=sticky_random.")
        self.revisit_prob, self.max_segments = revisit_prob, max_segments
        self.plans: list[list[int]] = [[] for _ in range(num_envs)]  # queued actions of an excursion, per env

    def _excursion(self) -> list[int]:
        keys = sorted(self.inverse)
        out, back = [], []
        for _ in range(int(self.rng.integers(1, self.max_segments + 1))):
            a = keys[int(self.rng.integers(len(keys)))]
            hold = int(self.rng.integers(self.min_hold, self.max_hold + 1))
            out += [a] * hold
            back = [self.inverse[a]] * hold + back
        return out + back

    def act(self, obs: np.ndarray) -> np.ndarray:
        actions = np.empty(self.num_envs, dtype=np.int64)
        for i in range(self.num_envs):
            if not self.plans[i] and self.left[i] <= 0 and self.rng.random() < self.revisit_prob:
                self.plans[i] = self._excursion()
            if self.plans[i]:
                actions[i] = self.plans[i].pop(0)
                continue
            if self.left[i] <= 0:
                self.current[i] = self.rng.integers(0, self.num_actions)
                self.left[i] = self.rng.integers(self.min_hold, self.max_hold + 1)
            self.left[i] -= 1
            actions[i] = self.current[i]
        return actions

    def episode_done(self, index: int) -> None:
        super().episode_done(index)
        self.plans[index] = []


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

    def episode_done(self, index: int) -> None:  # an actor that stacks frames clears game ``index``'s
        if hasattr(self.actor, "episode_done"):
            self.actor.episode_done(index)


def make_policy(name: str, num_actions: int, num_envs: int, seed: int, action_meanings: Sequence[str] | None = None,
                **kwargs) -> Policy:
    if name == "random":
        return RandomPolicy(num_actions, num_envs, seed)
    if name == "sticky_random":
        return StickyRandomPolicy(num_actions, num_envs, seed, int(kwargs.get("min_hold", 1)), int(kwargs.get("max_hold", 9)))
    if name == "revisit":
        return RevisitPolicy(num_actions, num_envs, seed, action_meanings or [str(i) for i in range(num_actions)],
                             int(kwargs.get("min_hold", 1)), int(kwargs.get("max_hold", 9)),
                             float(kwargs.get("revisit_prob", 0.5)), int(kwargs.get("max_segments", 2)))
    if name == "agent":
        if not callable(kwargs.get("actor")):
            raise ValueError("policy=agent needs the agent: on the command line policy.path=/path/to/agent.json "
                             "(an agent file written by `worldsim train-agent`).")
        return AgentPolicy(kwargs["actor"], num_envs, num_actions, float(kwargs.get("epsilon", 0.0)), seed)
    raise ValueError(f"Unknown policy {name!r}: use random, sticky_random, revisit or agent (with policy.path=...).")
