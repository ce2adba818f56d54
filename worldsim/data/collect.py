"""Record gameplay from real environments into an episode store.

Runs ``num_workers`` copies of the env in parallel (a Gymnasium vector env; one process per core by
default) under a behaviour policy and writes every finished episode atomically. Re-running with the
same store continues up to the requested total: episodes already on disk are kept, and only the
episodes in flight when a run was killed are lost (they are recorded again).

    worldsim collect env=boxing policy=sticky_random steps=60000 data_dir=data/boxing
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from worldsim.data.episode import EpisodeBuilder
from worldsim.data.policies import Policy, make_policy
from worldsim.data.store import EpisodeStore
from worldsim.envs import make_env, resolve_env_name
from worldsim.envs.common import STATE_PREFIX, env_metadata


@dataclass
class CollectResult:
    steps_before: int
    steps_recorded: int
    episodes_written: int
    seconds: float

    @property
    def steps_per_second(self) -> float:
        return self.steps_recorded / max(self.seconds, 1e-9)


def describe_env(env_name: str, env_kwargs: dict[str, Any], live: bool = True) -> dict[str, Any]:
    """The store metadata of an env, read from one short-lived instance. ``live=False`` (checking a
    store or checkpoint against a config, nothing to play): MineRL's is known without starting
    Minecraft, so imported recordings train where MineRL cannot be installed."""
    if not live and resolve_env_name(env_name) == "minerl":
        from worldsim.envs.minerl import minerl_env_metadata

        return minerl_env_metadata(**env_kwargs)
    env = make_env(env_name, **env_kwargs)
    try:
        return env_metadata(env, resolve_env_name(env_name), env_kwargs)
    finally:
        env.close()


def _state_of(info: dict[str, Any], i: int | None = None) -> dict[str, np.ndarray]:
    out = {}
    for k, v in info.items():
        if k.startswith(STATE_PREFIX):
            out[k[len(STATE_PREFIX):]] = np.asarray(v if i is None else v[i])
    return out


def collect(
    env_name: str,
    env_kwargs: dict[str, Any],
    data_dir: str,
    steps: int,
    policy: str = "sticky_random",
    policy_kwargs: dict[str, Any] | None = None,
    num_workers: int = 0,
    seed: int = 0,
    progress: bool = True,
) -> CollectResult:
    """Record until the store holds at least ``steps`` transitions. Returns what this call did."""
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}.")
    import os

    num_workers = num_workers or max(1, os.cpu_count() or 1)
    meta = describe_env(env_name, env_kwargs)
    # Build the policy first: a bad policy setting must fail before anything is written.
    make_policy(policy, meta["num_actions"], 1, seed, meta["action_meanings"], **(policy_kwargs or {}))
    store = EpisodeStore.create(data_dir, meta)
    before = store.total_steps()
    remaining = steps - before
    if remaining <= 0:
        print(f"{data_dir} already holds {before} steps (>= {steps} requested); nothing to record.")
        return CollectResult(before, 0, 0, 0.0)

    start_index = store.next_index()
    env_fns = [functools.partial(make_env, env_name, **env_kwargs) for _ in range(num_workers)]
    mode = gym.vector.AutoresetMode.SAME_STEP
    if num_workers == 1:
        vec = gym.vector.SyncVectorEnv(env_fns, autoreset_mode=mode)
    else:
        vec = gym.vector.AsyncVectorEnv(env_fns, autoreset_mode=mode, context="spawn")
    # Seeds depend on where this run starts, so a resumed run does not replay the same episodes.
    run_seed = seed * 1_000_003 + start_index * 1009
    pol: Policy = make_policy(policy, meta["num_actions"], num_workers, run_seed, meta["action_meanings"],
                              **(policy_kwargs or {}))
    realtime = meta["realtime"]
    t0 = time.perf_counter()
    obs, info = vec.reset(seed=run_seed)
    builders = [
        EpisodeBuilder(obs[i], _state_of(info, i), time.time() if realtime else None,
                       meta={"collect_seed": seed, "reset_seed": run_seed + i, "worker": i, "policy": policy})
        for i in range(num_workers)
    ]
    recorded = written = 0
    bar = tqdm(total=steps, initial=before, unit="step", desc=f"collect {env_name}", disable=not progress,
               dynamic_ncols=True)
    try:
        while recorded < remaining:
            actions = pol.act(obs)
            obs, rewards, terminated, truncated, info = vec.step(actions)
            now = time.time() if realtime else None
            for i in range(num_workers):
                done = bool(terminated[i] or truncated[i])
                if done:  # SAME_STEP autoreset: obs[i] already starts the next episode
                    final_obs = info["final_obs"][i]
                    final_state = _state_of(info["final_info"], i) if "final_info" in info else {}
                else:
                    final_obs, final_state = obs[i], _state_of(info, i)
                builders[i].add(actions[i], final_obs, rewards[i], terminated[i], truncated[i], final_state, now)
                if done:
                    store.write(builders[i].build(), start_index + written)
                    written += 1
                    pol.episode_done(i)
                    builders[i] = EpisodeBuilder(
                        obs[i], _state_of(info, i), now,
                        meta={"collect_seed": seed, "reset_seed": None, "worker": i, "policy": policy})
            recorded += num_workers
            bar.update(num_workers)
        # Keep the steps of the episodes still running: they end as truncated episodes.
        for b in builders:
            if len(b) > 0:
                store.write(b.build(cut=True), start_index + written)
                written += 1
    finally:
        bar.close()
        vec.close()
    return CollectResult(before, recorded, written, time.perf_counter() - t0)
