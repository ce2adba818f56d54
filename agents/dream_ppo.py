"""Train a PPO agent inside the dream, then score it on the real game (World Models' loop).

    worldsim train-agent env=boxing model=small agent.steps=50000

The agent never touches the real env while learning: every observation, reward and episode end
comes from the world model. The real env is used only to score the result, beside a random policy.
``agent.observation=latent`` trains on the dream's latent frames instead of decoded pixels (no
decoding per step, a smaller policy; :mod:`worldsim.agents.latent`); on the real game that agent
sees the world model's tokenizer's encoding of each frame.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from stable_baselines3.common.vec_env import VecMonitor

from worldsim.agents.agent_file import agent_paths
from worldsim.agents.ppo import AgentConfig, train_ppo
from worldsim.agents.actor import AgentActor
from worldsim.agents.latent import LatentEncoder
from worldsim.agents.real_eval import random_actor, score_on_real_env
from worldsim.sim.dream_env import DreamVectorEnv
from worldsim.sim.sb3 import DreamSB3VecEnv


def train_agent_in_dream(checkpoint: str | Path, out: str | Path, cfg: AgentConfig,
                         data_dir: str | Path | None = None, progress: bool = True,
                         precision: str = "auto", score: bool = True, compile: bool = False) -> dict[str, Any]:
    """Train (or continue training) PPO in the dream, save it as an agent file (``out``: the record,
    ``agent.json``; its weights beside it), then (``score``) play it and a random policy on the real game.
    ``compile``: compile the dream (:class:`DreamVectorEnv`; measured no faster on CPU, see docs/benchmarks.md)."""
    out = agent_paths(out)[0]
    dream = DreamVectorEnv(checkpoint, num_envs=cfg.num_envs, data_dir=data_dir, horizon=cfg.horizon,
                           obs_type=cfg.observation, device=cfg.device, precision=precision, compile=compile,
                           reward=cfg.dream_reward)
    venv = VecMonitor(DreamSB3VecEnv(dream))  # episode returns in the dream, for the report
    venv.seed(cfg.seed)
    env = dream.core.ckpt["env"]
    extra = {"env": {k: env[k] for k in ("env", "env_kwargs", "action_meanings", "frame_shape")},
             "world_model": str(checkpoint), "trained_in": "dream", "observation": cfg.observation,
             "agent_config": asdict(cfg)}
    run = train_ppo(venv, out, cfg, extra, progress, what="dream steps", desc="agent in the dream")
    agent = run.agent
    result = {
        "agent": str(out), "dream_steps": int(agent.num_timesteps), "dream_seconds": run.seconds,
        "dream_steps_per_s": (int(agent.num_timesteps) - run.steps_before) / max(run.seconds, 1e-9),
        "dream_mean_episode_return": run.mean_episode_return, "precision": dream.core.precision,
    }
    if not score:
        return result
    kwargs = dict(env["env_kwargs"])
    encoder = (LatentEncoder(checkpoint, cfg.device, loaded=(dream.core.model, dream.core.ckpt))
               if cfg.observation == "latent" else None)  # the dream's own tokenizer, not loaded twice
    real = score_on_real_env(AgentActor(agent.policy, cfg.frame_stack, encoder=encoder), env["env"], kwargs,
                             cfg.eval_episodes, seed=10_000 + cfg.seed, max_steps=cfg.eval_max_steps, progress=progress)
    rand = score_on_real_env(random_actor(env["num_actions"], cfg.seed), env["env"], kwargs, cfg.eval_episodes,
                             seed=10_000 + cfg.seed, max_steps=cfg.eval_max_steps, progress=progress)
    result.update({"real": real.as_dict(), "random_policy_real": rand.as_dict()})
    print(f"agent: real return {real.mean_return:.1f} ± {real.std_return:.1f} over {real.episodes} episodes "
          f"(random policy {rand.mean_return:.1f} ± {rand.std_return:.1f}); dream return {run.mean_episode_return}")
    return result
