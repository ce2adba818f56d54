"""Agent training in the dream, end to end: PPO (stable-baselines3, the settings of
``configs/agent/ppo.yaml``) on the ``small`` dream, dream steps/s including policy inference and
the SB3 updates, and where the time goes: the dream's ``step`` (world model, plus decoding for
pixels), the PPO updates, and the rest (policy inference during rollouts, buffers, Python).

    python benchmarks/agent_throughput.py --out benchmarks/results/agent_throughput.json

``--horizons 16,100`` measures short dreams beside the product's 100 steps: every dream restart
(encode the context, fill the cache, decode) is paid inside the dream's step time
(``benchmarks/results/agent_throughput_horizon.json``: two invocations, the second with the
orders reversed).

The policy sees the last ``--frame-stacks`` frames (4 in the product). Two agent kinds, both what
``worldsim train-agent`` trains: ``pixels`` (``CnnPolicy`` on decoded frames, ``agent.observation=pixels``)
and ``latent`` (``LatentCnnPolicy`` on the 16×16×16 latents, no decoding, ``agent.observation=latent``).
The world model is freshly initialised (its speed does not depend on its weights), started from a
synthetic context, so no data is needed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import VecEnvWrapper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from before_after import matmul_peak  # noqa: E402
from dream_throughput import FRAME, fresh_checkpoint  # noqa: E402

from worldsim.agents.actor import stack_frames  # noqa: E402
from worldsim.agents.latent import LatentCnnPolicy  # noqa: E402
from worldsim.agents.ppo import AgentConfig  # noqa: E402
from worldsim.io import atomic_write_json  # noqa: E402
from worldsim.sim.dream_env import DreamVectorEnv  # noqa: E402
from worldsim.sim.sb3 import DreamSB3VecEnv  # noqa: E402


class TimedEnv(VecEnvWrapper):
    """Seconds spent inside the dream's step (and reset)."""

    def __init__(self, venv) -> None:
        super().__init__(venv)
        self.seconds = 0.0

    def reset(self):
        t = time.perf_counter()
        obs = self.venv.reset()
        self.seconds += time.perf_counter() - t
        return obs

    def step_wait(self):
        t = time.perf_counter()
        out = self.venv.step_wait()
        self.seconds += time.perf_counter() - t
        return out


def measure(kind: str, frame_stack: int, horizon: int, ckpt: Path, cfg: AgentConfig, steps: int) -> dict:
    dream = DreamVectorEnv(ckpt, num_envs=cfg.num_envs, horizon=horizon, obs_type=kind, end_threshold=1.0)
    context = np.random.default_rng(0).integers(0, 256, (FRAME, FRAME, 3), dtype=np.uint8)
    dream.reset(seed=0, options={"context_frames": np.stack([context] * dream.core.C)})  # autoresets reuse it
    venv = TimedEnv(DreamSB3VecEnv(dream))
    policy = "CnnPolicy" if kind == "pixels" else LatentCnnPolicy
    agent = PPO(policy, stack_frames(venv, frame_stack, "last" if kind == "pixels" else "first"),
                n_steps=cfg.n_steps, batch_size=cfg.batch_size,
                n_epochs=cfg.n_epochs, learning_rate=cfg.lr, ent_coef=cfg.ent_coef, seed=cfg.seed, device="cpu", verbose=0)
    agent.set_logger(Logger(folder=None, output_formats=[]))
    update = {"seconds": 0.0}
    train = agent.train

    def timed_train() -> None:
        t = time.perf_counter()
        train()
        update["seconds"] += time.perf_counter() - t

    agent.train = timed_train
    t0 = time.perf_counter()
    agent.learn(steps, progress_bar=False)
    total = time.perf_counter() - t0
    n = int(agent.num_timesteps)
    return {"kind": kind, "frame_stack": frame_stack, "horizon": horizon, "policy": "CnnPolicy" if kind == "pixels" else "LatentCnnPolicy",
            "steps": n, "seconds": total,
            "steps_per_s": n / total, "dream_seconds": venv.seconds, "update_seconds": update["seconds"],
            "other_seconds": total - venv.seconds - update["seconds"],
            "share": {"dream": venv.seconds / total, "updates": update["seconds"] / total,
                      "policy_and_rest": (total - venv.seconds - update["seconds"]) / total}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4096, help="dream steps per agent kind (PPO rounds them up to rollouts)")
    ap.add_argument("--kinds", default="latent,pixels")
    ap.add_argument("--frame-stacks", default="4", help="frames the policy sees, e.g. 1,4 to compare (4: the product's)")
    ap.add_argument("--horizons", default=str(AgentConfig().horizon),
                    help="dream episode lengths, e.g. 16,100 to see what resets cost (100: the product's)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.manual_seed(0)
    cfg = AgentConfig()
    result = {"threads": torch.get_num_threads(), "agent_config": {k: getattr(cfg, k) for k in
              ("num_envs", "n_steps", "batch_size", "n_epochs")}, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = fresh_checkpoint("small", Path(tmp))
        for kind, k, h in [(kind, int(k), int(h)) for kind in args.kinds.split(",") for k in args.frame_stacks.split(",")
                           for h in args.horizons.split(",")]:
            peak, peak32 = matmul_peak(torch.bfloat16, 1.0), matmul_peak(torch.float32, 1.0)
            run = {**measure(kind, k, h, ckpt, cfg, args.steps), "bf16_peak_gflops": peak, "fp32_peak_gflops": peak32}
            result["runs"].append(run)
            s = run["share"]
            print(f"{kind:6s}, {k} frame(s), horizon {h}: {run['steps_per_s']:6.1f} dream steps/s end to end; time in the dream "
                  f"{100 * s['dream']:.0f}%, PPO updates {100 * s['updates']:.0f}%, policy and the rest "
                  f"{100 * s['policy_and_rest']:.0f}% (matmul peak bf16 {peak:.0f}, fp32 {peak32:.0f} GFLOP/s)", flush=True)
            atomic_write_json(Path(args.out), result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
