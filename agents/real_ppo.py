"""The model-free baseline: the same PPO trained directly on the real game, for a budget of real steps.

    worldsim train-model-free env=atari100k env.kwargs.game=pong agent.steps=100000

Same algorithm, same hyperparameters (``configs/agent/ppo.yaml``) and same number of real
environment steps as the agent trained in the dream, so the difference between them is what the
world model adds (or costs). The agent file has the same format and is scored the same way
(``worldsim evaluate-agent``). Training plays with the training-time options of the env (Atari:
terminal on life loss); scoring plays full games.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

from worldsim.agents.ppo import AgentConfig, train_ppo
from worldsim.envs import make_env


def _env(env_name: str, env_kwargs: dict[str, Any], seed: int):
    env = make_env(env_name, **env_kwargs)
    env.reset(seed=seed)
    return env


def train_model_free(env_name: str, env_kwargs: dict[str, Any], env_meta: dict[str, Any], out: str | Path,
                     cfg: AgentConfig, progress: bool = True) -> dict[str, Any]:
    """PPO on ``cfg.num_envs`` copies of the real env (in this process: ALE steps far faster than PPO
    learns) until ``cfg.steps`` real steps; resumable from the agent file ``out``. Always on pixels:
    without a world model there is no tokenizer to give latents (``cfg.observation`` is ignored)."""
    cfg = replace(cfg, observation="pixels")
    if cfg.steps < cfg.num_envs * cfg.n_steps:
        raise ValueError(f"agent.steps={cfg.steps} is less than one PPO rollout (num_envs x n_steps = "
                         f"{cfg.num_envs * cfg.n_steps}); raise agent.steps or lower agent.num_envs / agent.n_steps.")
    fns = [functools.partial(_env, env_name, dict(env_kwargs), cfg.seed * 1000 + i) for i in range(cfg.num_envs)]
    venv = VecMonitor(DummyVecEnv(fns))
    venv.seed(cfg.seed)
    extra = {"env": {k: env_meta[k] for k in ("env", "env_kwargs", "action_meanings", "frame_shape")},
             "trained_in": "real", "agent_config": asdict(cfg)}
    try:
        run = train_ppo(venv, out, cfg, extra, progress, what="real steps", desc="model-free agent")
    finally:
        venv.close()
    steps = int(run.agent.num_timesteps)
    return {"agent": str(out), "real_steps": steps, "seconds": run.seconds,
            "steps_per_s": (steps - run.steps_before) / max(run.seconds, 1e-9),
            "train_mean_episode_return": run.mean_episode_return}
