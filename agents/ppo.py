"""PPO (stable-baselines3) on any vector env, saved as an agent file and resumable from it.

Shared by the agent trained in the dream (:mod:`worldsim.agents.dream_ppo`) and the model-free
baseline trained on the real game (:mod:`worldsim.agents.real_ppo`): the same algorithm, the same
hyperparameters (:class:`AgentConfig`, the Hydra group ``configs/agent/ppo.yaml``), so a comparison
between them measures the world model and nothing else.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from stable_baselines3.common.callbacks import BaseCallback

from worldsim.agents.actor import stack_frames
from worldsim.agents.agent_file import agent_paths, restore_ppo, save_agent
from worldsim.sim.dream_env import REWARD_MODES


@dataclass
class AgentConfig:
    """PPO; the same values are ``configs/agent/ppo.yaml`` (a test keeps them equal)."""

    steps: int = 20_000  # environment steps of PPO (dream steps in the dream, real steps for the baseline)
    num_envs: int = 16
    horizon: int = 100  # dream episode length before truncation
    dream_reward: str = "expected"  # what a dream step pays: "expected" sign or its "mode" (worldsim/sim/dream_env.py)
    n_steps: int = 64  # PPO rollout length per env
    batch_size: int = 256
    n_epochs: int = 4
    lr: float = 2.5e-4
    ent_coef: float = 0.01
    frame_stack: int = 4  # the last k frames, stacked on the channel axis, are what the policy sees
    observation: str = "pixels"  # in the dream: "pixels" (decoded frames, CnnPolicy) or "latent" (LatentCnnPolicy)
    eval_episodes: int = 3
    eval_max_steps: int | None = None
    ckpt_every: int = 5000  # steps between agent-file saves (an interrupted run resumes there)
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.dream_reward not in REWARD_MODES:
            raise ValueError(f"agent.dream_reward must be 'expected' (p(+1) - p(-1)) or 'mode' (the most probable "
                             f"reward sign), got {self.dream_reward!r}.")
        if self.frame_stack < 1:
            raise ValueError(f"agent.frame_stack must be >= 1 (1 = single frames, 4 = the usual Atari stack), "
                             f"got {self.frame_stack}.")
        if self.observation not in ("pixels", "latent"):
            raise ValueError(f"agent.observation must be 'pixels' (decoded frames) or 'latent' (the tokenizer's "
                             f"latents, no decoding in the dream), got {self.observation!r}.")


class PeriodicSave(BaseCallback):
    """Writes the agent file at the first rollout boundary ``every`` or more steps after the last
    save: the resume point of an interrupted run. Saving between rollouts (after the update, before
    the next collection) keeps the saved step count equal to the steps the weights learned from and
    on a rollout boundary, so a resumed run stops where an uninterrupted one does."""

    def __init__(self, out: Path, every: int, extra: dict[str, Any]) -> None:
        super().__init__()
        self.out, self.every, self.extra, self.last = out, every, extra, 0

    def _on_training_start(self) -> None:
        self.last = self.num_timesteps  # a resumed run's start is already saved

    def _on_rollout_start(self) -> None:
        if self.num_timesteps - self.last >= self.every:
            save_agent(self.out, self.model, self.extra)
            self.last = self.num_timesteps

    def _on_step(self) -> bool:
        return True


class ProgressBar(BaseCallback):
    """A tqdm bar over the steps of this call (SB3's own bar needs ``rich``)."""

    def __init__(self, start: int, total: int, desc: str, enabled: bool) -> None:
        super().__init__()
        self.start, self.total, self.desc, self.enabled, self.bar = start, total, desc, enabled, None

    def _on_training_start(self) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, initial=self.start, desc=self.desc, unit="step", disable=not self.enabled,
                        dynamic_ncols=True)

    def _on_step(self) -> bool:
        if self.n_calls % 16 == 0:
            self.bar.n = min(self.num_timesteps, self.total)
            self.bar.refresh()
        return True

    def _on_training_end(self) -> None:
        self.bar.n = min(self.num_timesteps, self.total)
        self.bar.close()


class ReturnLog(BaseCallback):
    """``rl/episode_return`` and ``rl/episode_length`` (means over SB3's buffer of the last finished
    episodes) after every rollout, to ``<run>/metrics.jsonl`` and TensorBoard: the agent's return curve."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder, self.logger_ = folder, None

    def _on_training_start(self) -> None:
        from worldsim.training.runtime import Logger

        self.logger_ = Logger(self.folder)

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buffer = list(self.model.ep_info_buffer or [])
        if buffer:
            self.logger_.log(self.num_timesteps, {"rl/episode_return": sum(e["r"] for e in buffer) / len(buffer),
                                                  "rl/episode_length": sum(e["l"] for e in buffer) / len(buffer)})

    def _on_training_end(self) -> None:
        self.logger_.close()


class PPORun(NamedTuple):
    agent: Any  # stable_baselines3.PPO
    steps_before: int  # steps the agent file already held when this call started
    seconds: float
    mean_episode_return: float | None  # over SB3's buffer of the last finished episodes (needs a VecMonitor)


def train_ppo(venv, out: str | Path, cfg: AgentConfig, extra: dict[str, Any], progress: bool = True,
              what: str = "steps", desc: str = "train agent") -> PPORun:
    """Train PPO on ``venv`` until it has seen ``cfg.steps`` steps, continuing the agent file ``out``
    when it exists (weights, optimiser and step count of its last save), and save it there. The
    policy sees the last ``cfg.frame_stack`` frames (:func:`worldsim.agents.actor.stack_frames`): pixels
    through SB3's ``CnnPolicy``, latents (``cfg.observation="latent"``, a latent dream) through
    :class:`~worldsim.agents.latent.LatentCnnPolicy`."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import Logger as SB3Logger

    out = agent_paths(out)[0]
    t0 = time.perf_counter()
    latent = cfg.observation == "latent"
    venv = stack_frames(venv, cfg.frame_stack, "first" if latent else "last")
    if out.exists():
        agent = restore_ppo(out, venv, device=cfg.device)
        before = int(agent.num_timesteps)
        if progress and before < cfg.steps:
            print(f"resuming the agent from {out} at {before} of {cfg.steps} {what}")
    else:
        from worldsim.agents.latent import LatentCnnPolicy

        agent = PPO(LatentCnnPolicy if latent else "CnnPolicy", venv, n_steps=cfg.n_steps, batch_size=cfg.batch_size, n_epochs=cfg.n_epochs,
                    learning_rate=cfg.lr, ent_coef=cfg.ent_coef, seed=cfg.seed, device=cfg.device, verbose=0)
        before = 0
    if before >= cfg.steps:  # finished already (a rerun): the figures of the call that finished it
        done = json.loads(out.read_text()).get("training") or {}
        return PPORun(agent, int(done.get("steps_before", before)), float(done.get("seconds", 0.0)),
                      done.get("mean_episode_return"))
    # our own logs (ReturnLog); SB3's default logger would make an empty /tmp/SB3-<date> folder per call
    agent.set_logger(SB3Logger(folder=None, output_formats=[]))
    agent.learn(cfg.steps - before, progress_bar=False, reset_num_timesteps=before == 0,
                callback=[PeriodicSave(out, cfg.ckpt_every, extra), ProgressBar(before, cfg.steps, desc, progress),
                          ReturnLog(out.parent / out.stem)])
    buffer = list(agent.ep_info_buffer) if agent.ep_info_buffer is not None else []
    mean_return = float(sum(e["r"] for e in buffer) / len(buffer)) if buffer else None
    run = PPORun(agent, before, time.perf_counter() - t0, mean_return)
    save_agent(out, agent, {**extra, "training": {"steps_before": before, "seconds": run.seconds, "mean_episode_return": mean_return}})
    return run
