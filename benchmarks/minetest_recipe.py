"""The Minetest recipe's figures: collect -> tokenizer -> world model -> dream -> agent in the dream
-> scored on the real wood task beside random, from one ``worldsim run`` directory.

Run the recipe first (docs/minetest.md gives the command; 44 min on 2 cores), then

    python benchmarks/minetest_recipe.py --run runs/minetest/small --data data/minetest \\
        --heldout data/minetest_heldout --out benchmarks/results/minetest_recipe.json

which reads the run's files, counts the rewards the behaviour policy met, measures the matmul peak
of this machine (run it on the same machine, right after the run and with nothing else running)
plays the trivial policy (always ``attack``) on the real game with the scoring's reset seeds, and
writes one JSON: stage times, the world model against repeat-last at every horizon, its heads, and
the dream agent's real return beside the random and always-attack policies' on the same seeds.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from dream_throughput import matmul_peak  # noqa: E402

from worldsim.agents.evaluate import bootstrap_ci  # noqa: E402
from worldsim.agents.real_eval import score_on_real_env  # noqa: E402
from worldsim.data.store import EpisodeStore  # noqa: E402
from worldsim.io import atomic_write_json  # noqa: E402

ROLLOUT_KEYS = ("psnr", "motion_psnr", "ssim", "lpips", "fd_lpips", "moving_sharpness")


def store_summary(path: Path) -> dict:
    rewards, lengths = [], []
    for _, ep in EpisodeStore.open(path).iter_episodes():
        rewards.append(float(ep.rewards.sum()))
        lengths.append(len(ep))
    return {"episodes": len(lengths), "steps": int(sum(lengths)), "reward_total": float(sum(rewards)),
            "episodes_with_reward": int(sum(r > 0 for r in rewards)),
            "mean_return": float(np.mean(rewards)) if rewards else None}


def _constant(action: int, env_kwargs: dict, seed: int) -> float:
    return float(score_on_real_env(lambda obs: action, "minetest", env_kwargs, 1, seed=seed).returns[0])


def constant_policy(action: int, env_kwargs: dict, seeds: list[int], workers: int = 2) -> dict:
    """``action`` at every step, one real game per episode, ``workers`` games at a time."""
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        returns = list(pool.map(_constant, [action] * len(seeds), [env_kwargs] * len(seeds), seeds))
    return {"action": action, "seeds": seeds, "returns": returns, "mean_return": float(np.mean(returns)),
            "ci95": list(bootstrap_ci(returns, seeds[0]))}


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="the run directory of the recipe's `worldsim run`")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--heldout", type=Path, required=True)
    p.add_argument("--command", default="", help="the exact `worldsim run ...` command, recorded as given")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/minetest_recipe.json"))
    args = p.parse_args()

    ev = json.loads((args.run / "eval" / "world_model_eval.json").read_text())
    score = json.loads((args.run / "evaluation.json").read_text())
    r = ev["rollouts"]
    horizons = [str(h) for h in ev["horizons"]]
    fidelity = {who: {h: {k: r[who][h][k] for k in ROLLOUT_KEYS if k in r[who][h]} for h in horizons}
                for who in ("model", "repeat_last", "tokenizer_floor")}
    d = score["dream_agent"]
    meanings = d["env"]["action_meanings"]
    attack = constant_policy(meanings.index("attack"), d["env"]["env_kwargs"], d["real"]["seeds"])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = {
        "what": "the Minetest recipe: one `worldsim run env=minetest` (collect -> tokenizer -> world model -> "
                "dream -> PPO in the dream -> scored on the real wood task beside random)",
        "command": args.command, "commit": commit,
        "machine": {"cpu": cpu_name(), "cores": torch.get_num_threads(),
                    "matmul_peak_gflops": {"fp32": round(matmul_peak(torch.float32), 1),
                                           "bf16": round(matmul_peak(torch.bfloat16), 1)},
                    "peak_measured": "by this script when it ran, after the run, same machine"},
        "stage_seconds": json.loads((args.run / "timings.json").read_text()),
        "data": {"train": store_summary(args.data), "heldout": store_summary(args.heldout)},
        "world_model": {"precision": ev.get("precision"), "sampling_steps": ev.get("sampling_steps"),
                        "num_windows": r["num_windows"], "horizons": ev["horizons"], "fidelity": fidelity,
                        "controllability_db": r["controllability_db"], "heads": ev["heads"],
                        "rollout_reward_by_real_sign": r.get("rollout_reward_by_real_sign")},
        "agent": {"dream_steps": d.get("num_timesteps"), "real": d["real"], "random": d.get("random"),
                  "constant_attack": attack,
                  "dream_return": d.get("dream"), "episodes": score["episodes"]},
    }
    atomic_write_json(args.out, result)
    m, last = fidelity["model"], fidelity["repeat_last"]
    for h in horizons:
        print(f"h={h}: PSNR {m[h]['psnr']:.2f} (repeat-last {last[h]['psnr']:.2f}), LPIPS {m[h]['lpips']:.3f} "
              f"({last[h]['lpips']:.3f}), controllability {r['controllability_db'][h]:+.2f} dB")
    print(f"dream agent {d['real']['mean_return']:.2f} {d['real']['ci95']}, random {d['random']['mean_return']:.2f} "
          f"{d['random']['ci95']}, always attack {attack['mean_return']:.2f} {attack['ci95']} wood per episode; "
          f"written to {args.out}")


if __name__ == "__main__":
    main()
