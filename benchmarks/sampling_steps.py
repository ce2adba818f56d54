"""Sampling steps against quality and cost, on one trained checkpoint.

    python benchmarks/sampling_steps.py --checkpoint runs/boxing/small/world_model.pt \
        --data data/boxing_heldout --steps 1 2 3 4 --out benchmarks/results/sampling_steps_boxing.json

For each number of steps n (n denoiser evaluations per generated frame, see
``worldsim.diffusion.karras_sigmas``): the rollout metrics of ``worldsim evaluate-world-model``
(PSNR, motion PSNR, SSIM, LPIPS, sharpness ratios, controllability; same held-out windows and noise
for every n) and the dream's speed at batch 64 with pixel observations, beside the fp32 and bf16
matmul peaks measured in the same run. Resumable: each n is written to the JSON as it finishes,
and a re-run skips the ones already there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from worldsim.evaluation.world_model_eval import EvalConfig, evaluate_world_model
from worldsim.io import atomic_write_json
from worldsim.models.loading import load_world_model
from worldsim.runtime import resolve_precision
from worldsim.sim.dream_env import DreamVectorEnv

sys.path.insert(0, str(Path(__file__).parent))
from dream_throughput import matmul_peak  # noqa: E402


def dream_steps_per_s(checkpoint: str, data: str, steps: int, batch: int, seconds: float) -> float:
    env = DreamVectorEnv(checkpoint, num_envs=batch, data_dir=data, context_split="all", sampling_steps=steps,
                         end_threshold=1.0, horizon=10_000)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(3):  # warm-up
        env.step(rng.integers(env.single_action_space.n, size=batch))
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        env.step(rng.integers(env.single_action_space.n, size=batch))
        env.core.observations()
        n += 1
    return n * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True, help="held-out episode store (split=all)")
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 2, 3, 4])
    ap.add_argument("--windows", type=int, default=100)
    ap.add_argument("--horizons", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--batch", type=int, default=64, help="dream batch for the speed figure")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {}
    if result.get("checkpoint") not in (None, args.checkpoint):
        raise SystemExit(f"{out} holds results of another checkpoint ({result['checkpoint']}); choose another --out.")
    result.update({"checkpoint": args.checkpoint, "data": args.data, "windows": args.windows,
                   "command": "python benchmarks/sampling_steps.py " + " ".join(sys.argv[1:]), "threads": torch.get_num_threads()})
    result.setdefault("runs", {})
    result["matmul_gflops"] = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    model, ckpt = load_world_model(args.checkpoint)
    result["precision"] = resolve_precision("auto", torch.device("cpu"))
    for n in args.steps:
        if str(n) in result["runs"]:
            print(f"{n} steps: already measured, skipped")
            continue
        t0 = time.perf_counter()
        ev = evaluate_world_model(model, ckpt, args.data, EvalConfig(num_windows=args.windows, horizons=args.horizons,
                                                                       split="all", sampling_steps=n), progress=False)
        run = {"evaluation": ev, "eval_seconds": time.perf_counter() - t0,
               "dream_steps_per_s_pixels": dream_steps_per_s(args.checkpoint, args.data, n, args.batch, args.seconds),
               "dream_batch": args.batch}
        result["runs"][str(n)] = run
        atomic_write_json(out, result)
        m = ev["rollouts"]["model"]
        print(f"{n} steps: PSNR h1 {m['1']['psnr']:.2f} h16 {m['16']['psnr']:.2f}, LPIPS h1 {m['1']['lpips']:.3f} "
              f"h16 {m['16']['lpips']:.3f}, moving sharpness h16 {m['16']['moving_sharpness']:.2f}, "
              f"{run['dream_steps_per_s_pixels']:.0f} dream steps/s", flush=True)
    atomic_write_json(out, result)


if __name__ == "__main__":
    main()
