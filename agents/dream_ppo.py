"""Train a PPO agent inside the dream, then score it on the real game (World Models' loop).

    worldsim train-agent env=boxing model=small agent.steps=50000

The agent never touches the real env while learning: every observation, reward and episode end
comes from the world model. The real env is used only to score the result, beside a random policy.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecMonitor

from worldsim.agents.agent_file import agent_paths, restore_ppo, save_agent
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
    ckpt_every: int = 5000  # dream steps between agent-file saves (an interrupted run resumes there)
    seed: int = 0
    device: str = "cpu"


class PeriodicSave(BaseCallback):
    """Writes the agent file every ``every`` steps: the resume point of an interrupted run."""

    def __init__(self, out: Path, every: int, extra: dict[str, Any]) -> None:
        super().__init__()
        self.out, self.every, self.extra, self.last = out, every, extra, 0

    def _on_step(self) -> bool:
        if self.num_timesteps - self.last >= self.every:
            save_agent(self.out, self.model, self.extra)
            self.last = self.num_timesteps
        return True


def train_agent_in_dream(checkpoint: str | Path, out: str | Path, cfg: DreamAgentConfig,
                         data_dir: str | Path | None = None, progress: bool = True,
                         precision: str = "auto") -> dict[str, Any]:
    """Train (or continue training) PPO in the dream, save it as an agent file (``out``: the record,
    ``agent.json``; its weights beside it), then score it and a random policy on the real game."""
    from stable_baselines3 import PPO

    out = agent_paths(out)[0]
    dream = DreamVectorEnv(checkpoint, num_envs=cfg.num_envs, data_dir=data_dir, horizon=cfg.horizon,
                           device=cfg.device, precision=precision)
    venv = VecMonitor(DreamSB3VecEnv(dream))  # episode returns in the dream, for the report
    venv.seed(cfg.seed)
    env = dream.core.ckpt["env"]
    extra = {"env": {k: env[k] for k in ("env", "env_kwargs", "action_meanings", "frame_shape")},
             "world_model": str(checkpoint), "trained_in": "dream", "agent_config": asdict(cfg)}
    t0 = time.perf_counter()
    if out.exists():  # resume: the weights, the optimiser and the step count of the last save
        agent = restore_ppo(out, venv, device=cfg.device)
        done_steps = int(agent.num_timesteps)
        if progress:
            print(f"resuming the agent from {out} at {done_steps} of {cfg.steps} dream steps")
    else:
        agent = PPO("CnnPolicy", venv, n_steps=cfg.n_steps, batch_size=cfg.batch_size, n_epochs=cfg.n_epochs,
                    learning_rate=cfg.lr, ent_coef=cfg.ent_coef, seed=cfg.seed, device=cfg.device, verbose=0)
        done_steps = 0
    if done_steps < cfg.steps:
        agent.learn(cfg.steps - done_steps, progress_bar=False, reset_num_timesteps=done_steps == 0,
                    callback=PeriodicSave(out, cfg.ckpt_every, extra))
        save_agent(out, agent, extra)
    dream_seconds = time.perf_counter() - t0
    ep_info = list(agent.ep_info_buffer) if agent.ep_info_buffer is not None else []
    dream_return = float(sum(e["r"] for e in ep_info) / len(ep_info)) if ep_info else None

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
