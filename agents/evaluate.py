"""Score a saved agent on the **real** game, and the same agent in the dream beside it.

    worldsim evaluate-agent path=runs/boxing/small/agent.json episodes=30

Episodes are played with fixed seeds (``seed, seed + 1, ...``) in parallel worker processes, each
loading the agent file itself (no pickled objects cross processes). Reported: per-episode returns,
the mean with a percentile-bootstrap 95% interval (10,000 resamples, seeded), the human-normalized
score where the protocol allows it (Atari 100k games under ``env=atari100k`` only: scores under the
sticky-action presets are never normalised against the published Atari 100k references), a
uniformly random policy in the same harness and seeds, and the agent's mean return in the dream it
was trained in (the dream-to-real gap) beside the random policy's in the same dreams: what the
dream pays for playing well rather than at random.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from worldsim.agents.agent_file import read_agent
from worldsim.agents.real_eval import random_actor, score_on_real_env
from worldsim.envs.atari_scores import REFERENCE_SCORES, human_normalized_score

ATARI_100K_KWARGS = {"repeat_action_probability": 0.0, "noop_max": 30, "frame_skip": 4}


@dataclass
class AgentEvalConfig:
    episodes: int = 10
    seed: int = 10_000  # episode i is played with reset seed ``seed + i``
    num_workers: int = 0  # 0 = one process per core
    max_steps: int | None = None  # None: full episodes (the env's own cap)
    deterministic: bool = False  # greedy actions instead of samples from the policy
    dream_episodes: int = 16  # 0 skips the dream return
    random_baseline: bool = True
    progress: bool = False  # a bar per policy, one tick per finished game
    world_model: str | None = None  # a latent agent sees frames through this world model's tokenizer (None: its record's)


def bootstrap_ci(values: list[float], seed: int = 0, resamples: int = 10_000, level: float = 0.95) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean (Efron & Tibshirani 1993, ch. 13)."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        return float(x.mean()), float(x.mean())
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), (resamples, len(x)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _play(agent: str | None, env_name: str, env_kwargs: dict, seeds: list[int], max_steps: int | None,
          deterministic: bool, num_actions: int, world_model: str | None = None) -> list[tuple[float, int]]:
    """One worker: episodes with the given reset seeds -> [(return, length)]. The policy's own
    sampling is seeded per episode too, so a score does not depend on how episodes fall on workers."""
    import torch

    torch.set_num_threads(1)
    actor = None
    if agent is not None:
        from worldsim.agents.actor import AgentActor

        actor = AgentActor.from_file(agent, deterministic=deterministic, world_model=world_model)
    out = []
    for s in seeds:
        if actor is None:
            act = random_actor(num_actions, s)
        else:
            torch.manual_seed(s)
            act = actor
        score = score_on_real_env(act, env_name, env_kwargs, 1, seed=s, max_steps=max_steps)
        out.append((score.returns[0], int(score.mean_length)))
    return out


def play_real(agent: str | None, env_name: str, env_kwargs: dict, num_actions: int, cfg: AgentEvalConfig) -> dict[str, Any]:
    seeds = [cfg.seed + i for i in range(cfg.episodes)]
    workers = max(1, min(cfg.num_workers or (os.cpu_count() or 1), len(seeds)))
    who = "agent" if agent else "random policy"
    bar = tqdm(total=len(seeds), desc=f"{who} on real {env_name}", unit="episode", disable=not cfg.progress)
    by_seed = {}
    if workers == 1:
        for s in seeds:
            by_seed[s] = _play(agent, env_name, env_kwargs, [s], cfg.max_steps, cfg.deterministic, num_actions,
                               cfg.world_model)[0]
            bar.update(1)
    else:  # one task per episode, so the bar moves as games finish
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(_play, agent, env_name, env_kwargs, [s], cfg.max_steps, cfg.deterministic,
                                   num_actions, cfg.world_model): s for s in seeds}
            for future in as_completed(futures):
                by_seed[futures[future]] = future.result()[0]
                bar.update(1)
    bar.close()
    returns = [by_seed[s][0] for s in seeds]
    return {"episodes": len(seeds), "seeds": seeds, "returns": returns, "lengths": [by_seed[s][1] for s in seeds],
            "mean_return": float(np.mean(returns)), "ci95": list(bootstrap_ci(returns, cfg.seed))}


def protocol_of(env_name: str, env_kwargs: dict) -> str:
    if env_name != "atari":
        return env_name
    return "atari100k" if all(env_kwargs.get(k) == v for k, v in ATARI_100K_KWARGS.items()) else "atari_sticky"


def _hns(game: str | None, protocol: str, real: dict) -> dict[str, Any] | None:
    if protocol != "atari100k" or game not in REFERENCE_SCORES:
        return None
    return {"mean": human_normalized_score(game, real["mean_return"]),
            "ci95": [human_normalized_score(game, v) for v in real["ci95"]]}


def play_dream(envs, actor, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The first episode of each of ``envs``' dreams (reset with ``seed``) played by ``actor``
    (batched ``actor(obs) -> actions``, with ``episode_done(i)``) -> (returns, lengths)."""
    obs, _ = envs.reset(seed=seed)
    n = envs.num_envs
    totals, lengths, done = np.zeros(n), np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    while not done.all():
        obs, rewards, term, trunc, _ = envs.step(actor(obs))
        totals += np.where(done, 0.0, rewards)
        lengths += ~done
        done |= term | trunc
        for i in np.flatnonzero(term | trunc):  # autoreset: game i starts over
            actor.episode_done(int(i))
    return totals, lengths


def episode_summary(returns: np.ndarray, lengths: np.ndarray, seed: int) -> dict[str, Any]:
    """Per-episode returns and lengths with the mean return and its bootstrap interval."""
    return {"returns": returns.tolist(), "lengths": lengths.tolist(), "mean_return": float(returns.mean()),
            "ci95": list(bootstrap_ci(returns.tolist(), seed))}


class RandomActor:
    """Uniform actions for a batch of dreams, from one seeded generator."""

    def __init__(self, num_actions: int, seed: int) -> None:
        self.n, self.rng = num_actions, np.random.default_rng(seed)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.rng.integers(self.n, size=len(obs))

    def episode_done(self, index: int) -> None:
        pass


def dream_return(agent: str, record: dict[str, Any], episodes: int, seed: int, deterministic: bool,
                 world_model: str | None = None, with_random: bool = False) -> dict[str, Any]:
    """Mean return of the agent over its first ``episodes`` dream episodes (contexts from real play),
    in the dream of ``world_model`` (default: the one its record names), paid as it was trained
    (``agent.dream_reward``). ``with_random``: a uniformly
    random policy plays the same dreams too (the same reset seed: the same contexts and noise), and
    the agent's paired advantage over it is reported: a dream whose return barely depends on the
    policy gives PPO nothing to learn (docs/agents.md, "Does the dream rank policies")."""
    from worldsim.agents.actor import AgentActor
    from worldsim.sim.dream_env import DreamVectorEnv

    horizon = int(record.get("agent_config", {}).get("horizon", 100))
    envs = DreamVectorEnv(world_model or record["world_model"], num_envs=episodes, horizon=horizon,
                          obs_type=record.get("observation", "pixels"),
                          reward=record.get("agent_config", {}).get("dream_reward", "expected"))
    spaces = SimpleNamespace(observation_space=envs.single_observation_space, action_space=envs.single_action_space)
    actor = AgentActor.from_file(agent, env=spaces, where="the dream", deterministic=deterministic)
    totals, lengths = play_dream(envs, actor, seed)
    out = {"episodes": episodes, "horizon": horizon, **episode_summary(totals, lengths, seed)}
    if with_random:
        rand, rand_lengths = play_dream(envs, RandomActor(envs.single_action_space.n, seed), seed)
        diff = (totals - rand).tolist()
        out["random"] = episode_summary(rand, rand_lengths, seed)
        out["agent_minus_random"] = {"mean": float(np.mean(diff)), "ci95": list(bootstrap_ci(diff, seed))}
    envs.close()
    return out


def evaluate_agent(agent: str | Path, cfg: AgentEvalConfig) -> dict[str, Any]:
    """Real-game scores of an agent file (and of a random policy), its HNS and dream-to-real gap."""
    if cfg.episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {cfg.episodes}.")
    record, _ = read_agent(agent)
    env = record.get("env")
    if not env or "env" not in env:
        raise ValueError(f"{agent} does not record which env it was trained for; it cannot be scored on a real game.")
    env_name, env_kwargs = env["env"], dict(env.get("env_kwargs", {}))
    num_actions = int(record["action_space"]["n"])
    protocol = protocol_of(env_name, env_kwargs)
    game = env_kwargs.get("game")
    real = play_real(str(agent), env_name, env_kwargs, num_actions, cfg)
    result: dict[str, Any] = {"agent": str(agent), "env": env, "protocol": protocol, "real": real,
                              "hns": _hns(game, protocol, real), "num_timesteps": record.get("num_timesteps")}
    if protocol == "atari_sticky":
        result["hns_note"] = ("sticky-action preset: not the Atari 100k protocol, so no human-normalized score "
                              "(train and score under env=atari100k for that)")
    if cfg.random_baseline:
        rand = play_real(None, env_name, env_kwargs, num_actions, cfg)
        result["random"] = {**rand, "hns": _hns(game, protocol, rand)}
    world_model = cfg.world_model or record.get("world_model")
    if cfg.dream_episodes and world_model and Path(world_model).exists():
        dream = dream_return(str(agent), record, cfg.dream_episodes, cfg.seed, cfg.deterministic, world_model,
                             with_random=cfg.random_baseline)
        result["dream"] = dream
        result["dream_to_real_gap"] = dream["mean_return"] - real["mean_return"]
    return result
