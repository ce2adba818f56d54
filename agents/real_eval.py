"""Score a policy on the real environment a world model was trained on."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
from tqdm.auto import tqdm

from worldsim.envs import make_env, scoring_kwargs


@dataclass
class RealScore:
    episodes: int
    mean_return: float
    std_return: float
    returns: list[float]
    mean_length: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_on_real_env(act: Callable[[np.ndarray], int], env_name: str, env_kwargs: dict[str, Any], episodes: int,
                      seed: int = 0, max_steps: int | None = None, progress: bool = False) -> RealScore:
    """Play ``episodes`` full episodes with ``act(obs) -> action``; seeds ``seed, seed+1, ...``.
    Full games: training-only signals such as Atari's life-loss terminal are turned off. An actor
    with a ``reset()`` (an :class:`~worldsim.agents.actor.AgentActor`: its frame stack) is reset
    before every episode."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}.")
    env = make_env(env_name, **scoring_kwargs(env_name, env_kwargs))
    returns, lengths = [], []
    try:
        for ep in tqdm(range(episodes), desc=f"scoring on real {env_name}", disable=not progress):
            obs, _ = env.reset(seed=seed + ep)
            if hasattr(act, "reset"):
                act.reset()
            total, steps, done = 0.0, 0, False
            while not done:
                obs, r, term, trunc, _ = env.step(int(act(obs)))
                total += float(r)
                steps += 1
                done = term or trunc or (max_steps is not None and steps >= max_steps)
            returns.append(total)
            lengths.append(steps)
    finally:
        env.close()
    return RealScore(episodes, float(np.mean(returns)), float(np.std(returns)), returns, float(np.mean(lengths)))


def random_actor(num_actions: int, seed: int = 0) -> Callable[[np.ndarray], int]:
    rng = np.random.default_rng(seed)
    return lambda obs: int(rng.integers(num_actions))
