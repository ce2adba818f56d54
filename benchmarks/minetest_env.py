"""What the Minetest env costs and shows, measured: start-up, reset, step pacing, CPU per game,
frame grabs, reproducibility of a scripted scene, and a still of what the agent sees.

    python benchmarks/minetest_env.py --out benchmarks/results/minetest_env.json --still docs/media/minetest_frames.png

One game at a time (run it alone: it measures CPU use). The still shows, left to right: the start
of an episode (facing a trunk), after 30 steps of ``attack`` (the trunk node dug), a red wool
pillar placed by scene scripting, the view turned away, and back (the same frame as the third).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np

from worldsim.envs.minetest import MinetestEnv
from worldsim.io import atomic_write_json


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for p in pids:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15 of the whole line)
    return total / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=400, help="steps of a sticky-random policy for pacing and CPU")
    ap.add_argument("--out", default="benchmarks/results/minetest_env.json")
    ap.add_argument("--still", default="docs/media/minetest_frames.png")
    args = ap.parse_args()

    load_before = os.getloadavg()[0]  # > ~0.5 means something else was running: the CPU figures are then rough
    t0 = time.perf_counter()
    env = MinetestEnv()
    start_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    obs, info = env.reset(seed=0)
    first_reset_s = time.perf_counter() - t0  # finds the trees and calibrates the camera
    t0 = time.perf_counter()
    env.reset(seed=0)
    reset_s = time.perf_counter() - t0

    stills = [obs]
    wood = 0.0
    for _ in range(30):
        wood += env.step(8)[1]
    stills.append(env.settle())

    px, py, pz = (float(v) for v in info["state/pos"])
    x, y, z = math.floor(px + 0.5), math.floor(py + 0.5), math.floor(pz + 0.5)
    env.teleport((px, py, pz, 0.0, 0.0))
    env.set_nodes([(x, y + k, z + d, "air") for k in range(3) for d in (1, 2)]
                  + [(x, y + k, z + 3, "wool:red") for k in range(3)])
    pillar = env.settle()
    away = env.teleport((px, py, pz, math.pi, 0.0))
    back = env.teleport((px, py, pz, 0.0, 0.0))
    stills += [pillar, away, back]

    grabs = []
    for _ in range(50):
        t = time.perf_counter()
        env.game.grab()
        grabs.append(time.perf_counter() - t)

    env.reset(seed=1)
    rng = np.random.default_rng(0)
    pids = env.game.pids + [os.getpid()]
    c0, t0 = cpu_seconds(pids), time.perf_counter()
    action, intervals, last = 0, [], time.perf_counter()
    for i in range(args.steps):
        if i % 5 == 0:
            action = int(rng.integers(env.action_space.n))
        env.step(action)
        now = time.perf_counter()
        intervals.append(now - last)
        last = now
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(pids) - c0
    env.close()

    iv = np.array(intervals[1:])
    result = {
        "what": "one Minetest game (Xvfb + minetest 5.6.1 client with its local server), 64x64 observations "
                "rendered at 128x128, 20 Hz control",
        "start_seconds": start_s, "first_reset_seconds": first_reset_s, "reset_seconds": reset_s,
        "wood_after_30_attack_steps": wood,
        "scene_return_identical": bool(np.array_equal(pillar, back)),
        "red_pixels_share": {name: float(((f[..., 0] > 120) & (f[..., 0] > 2 * f[..., 1].astype(int))
                                          & (f[..., 0] > 2 * f[..., 2].astype(int))).mean())
                             for name, f in (("pillar", pillar), ("away", away), ("back", back))},
        "frame_grab_ms": {"median": 1000 * float(np.median(grabs)), "max": 1000 * float(np.max(grabs))},
        "steps": args.steps, "step_hz": args.steps / wall,
        "step_interval_ms": {"median": 1000 * float(np.median(iv)), "p99": 1000 * float(np.percentile(iv, 99)),
                             "max": 1000 * float(iv.max())},
        "load_average_before": load_before, "cpu_cores_used": cpu / wall, "games_per_2_cores": 2 / max(cpu / wall, 1e-9),
        "command": "python benchmarks/minetest_env.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items()),
    }
    atomic_write_json(Path(args.out), result)
    if args.still:
        from PIL import Image

        Path(args.still).parent.mkdir(parents=True, exist_ok=True)
        strip = np.concatenate([np.pad(s, ((2, 2), (2, 2), (0, 0)), constant_values=255) for s in stills], 1)
        Image.fromarray(strip).resize((strip.shape[1] * 3, strip.shape[0] * 3), Image.NEAREST).save(args.still)
    print({k: v for k, v in result.items() if k != "command"})


if __name__ == "__main__":
    main()
