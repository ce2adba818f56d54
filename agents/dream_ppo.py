"""Train a PPO agent inside the dream, then score it on the real game (World Models' loop).

    worldsim train-agent env=boxing model=small agent.steps=50000

The agent never touches the real env while learning: every observation, reward and episode end
comes from the world model. The real env is used only to score the result, beside a random policy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from stable_baselines3.common.vec_env import VecMonitor

from worldsim.agents.real_eval import random_actor, sb3_actor, score_on_real_env
from worldsim.sim.dream_env import DreamVectorEnv
from worldsim.sim.sb3 import DreamSB3VecEnv


@dataclass
class DreamAgentConfig:
    """PPO in the dream; the same values are the Hydra group ``configs/agent/ppo.yaml`` (a test keeps them equal)."""

    steps: int = 20_000  # dream steps of PPO
    num_envs: int = 16
    horizon: int = 100  # dream episode length before truncation
    n_steps: int = 64  # PPO rollout length per env
    batch_size: int = 256
    n_epochs: int = 4
    lr: float = 2.5e-4
    ent_coef: float = 0.01
    eval_episodes: int = 3
    eval_max_steps: int | None = None
    seed: int = 0
    device: str = "cpu"


def train_agent_in_dream(checkpoint: str | Path, out: str | Path, cfg: DreamAgentConfig,
                         data_dir: str | Path | None = None, progress: bool = True,
                         precision: str = "auto") -> dict[str, Any]:
    from stable_baselines3 import PPO

    out = Path(out)
    dream = DreamVectorEnv(checkpoint, num_envs=cfg.num_envs, data_dir=data_dir, horizon=cfg.horizon,
                           device=cfg.device, precision=precision)
    venv = VecMonitor(DreamSB3VecEnv(dream))  # episode returns in the dream, for the report
    venv.seed(cfg.seed)
    t0 = time.perf_counter()
    if out.exists():  # resume: keep learning with the saved agent
        agent = PPO.load(out, env=venv, device=cfg.device)
        done_steps = int(agent.num_timesteps)
    else:
        agent = PPO("CnnPolicy", venv, n_steps=cfg.n_steps, batch_size=cfg.batch_size, n_epochs=cfg.n_epochs,
                    learning_rate=cfg.lr, ent_coef=cfg.ent_coef, seed=cfg.seed, device=cfg.device, verbose=0)
        done_steps = 0
    if done_steps < cfg.steps:
        agent.learn(cfg.steps - done_steps, progress_bar=False, reset_num_timesteps=done_steps == 0)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.stem}.tmp.zip")
        agent.save(tmp)
        tmp.replace(out)
    dream_seconds = time.perf_counter() - t0
    ep_info = list(agent.ep_info_buffer) if agent.ep_info_buffer is not None else []
    dream_return = float(sum(e["r"] for e in ep_info) / len(ep_info)) if ep_info else None

    env = dream.core.ckpt["env"]
    kwargs = dict(env["env_kwargs"])
    real = score_on_real_env(sb3_actor(agent), env["env"], kwargs, cfg.eval_episodes, seed=10_000 + cfg.seed,
                             max_steps=cfg.eval_max_steps, progress=progress)
    rand = score_on_real_env(random_actor(env["num_actions"], cfg.seed), env["env"], kwargs, cfg.eval_episodes,
                             seed=10_000 + cfg.seed, max_steps=cfg.eval_max_steps, progress=progress)
    result = {
        "agent": str(out), "dream_steps": int(agent.num_timesteps), "dream_seconds": dream_seconds,
        "dream_steps_per_s": (int(agent.num_timesteps) - done_steps) / max(dream_seconds, 1e-9),
        "dream_mean_episode_return": dream_return, "precision": dream.core.precision,
        "real": real.as_dict(), "random_policy_real": rand.as_dict(),
    }
    print(f"agent: real return {real.mean_return:.1f} ± {real.std_return:.1f} over {real.episodes} episodes "
          f"(random policy {rand.mean_return:.1f} ± {rand.std_return:.1f}); dream return {dream_return}")
    return result
