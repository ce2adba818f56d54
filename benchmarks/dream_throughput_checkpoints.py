"""Dream steps/s of trained checkpoints side by side (``DreamVectorEnv`` with real contexts from a
store), alternating which goes first, each beside the fp32 / bf16 matmul peaks measured just before:

    python benchmarks/dream_throughput_checkpoints.py --checkpoints A.pt B.pt --labels a b \\
        --data DATA_DIR --out benchmarks/results/NAME.json [--sampling-steps 1 2]

``benchmarks/dream_throughput.py`` measures fresh presets on synthetic contexts; this one measures
what a user's own trained models cost (e.g. with and without pose memory, or another context).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

from worldsim.io import atomic_write_json
from worldsim.sim.dream_env import DreamVectorEnv

sys.path.insert(0, str(Path(__file__).resolve().parent))
from before_after import matmul_peak, per_checkpoint_steps  # noqa: E402
from dream_throughput import time_env  # noqa: E402


def measure(checkpoint: str, data: str, batch: int, obs: str, seconds: float, sampling_steps: int | None) -> dict:
    env = DreamVectorEnv(checkpoint, num_envs=batch, data_dir=data, obs_type=obs, end_threshold=1.0, horizon=10**6,
                         sampling_steps=sampling_steps)
    env.reset(seed=0)
    peaks = {"fp32_peak_gflops": matmul_peak(torch.float32, 1.0), "bf16_peak_gflops": matmul_peak(torch.bfloat16, 1.0)}
    sps = time_env(env, seconds)  # a warm-up step, then random actions for ``seconds``
    env.close()
    return {"steps_per_s": sps, **peaks}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoints", nargs="+", required=True)
    ap.add_argument("--labels", nargs="+", required=True)
    ap.add_argument("--data", required=True, help="an episode store of the checkpoints' env (the dreams' contexts)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--obs", nargs="+", default=["latent", "pixels"])
    ap.add_argument("--sampling-steps", nargs="+", type=int,
                    help="denoiser steps per frame, one per checkpoint (default: each model's own)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    steps = per_checkpoint_steps(ap, args)
    out = {"batch": args.batch, "threads": torch.get_num_threads(), "rounds": args.rounds,
           "checkpoints": dict(zip(args.labels, args.checkpoints)),
           "sampling_steps": dict(zip(args.labels, steps)), "cases": []}
    for obs in args.obs:
        runs: dict[str, list[dict]] = {label: [] for label in args.labels}
        for r in range(args.rounds):
            order = list(zip(args.labels, args.checkpoints, steps))
            for label, ckpt, n in (order if r % 2 == 0 else order[::-1]):
                runs[label].append(measure(ckpt, args.data, args.batch, obs, args.seconds, n))
                print(obs, label, runs[label][-1], flush=True)
        med = {k: statistics.median(m["steps_per_s"] for m in v) for k, v in runs.items()}
        out["cases"].append({"obs": obs, "median_steps_per_s": med, "runs": runs})
    atomic_write_json(Path(args.out), out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
