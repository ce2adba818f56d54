"""Collection throughput (env steps/s, 1 worker vs all workers) and dataset loading throughput
(windows/s from WindowDataset.sample, and episode decompression).

    python benchmarks/collect_throughput.py --out benchmarks/results/collect_throughput.json
    python benchmarks/collect_throughput.py --env minetest --steps 2000 --workers 1 4 \
        --out benchmarks/results/collect_throughput_minetest.json   # real time: one game per worker
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from worldsim.data.collect import collect
from worldsim.data.dataset import WindowDataset
from worldsim.data.store import EpisodeStore
from worldsim.io import atomic_write_json


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--env", default="atari")
    ap.add_argument("--game", default="boxing")
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--workers", type=int, nargs="+", default=None, help="worker counts (default: 1 and all cores)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    kwargs = {"game": args.game} if args.env == "atari" else {}
    cores = os.cpu_count() or 1
    result = {"env": args.env, "env_kwargs": kwargs, "steps": args.steps, "cpu_count": cores, "collect": {}}
    tmp = Path(tempfile.mkdtemp())
    try:
        counts = sorted(set(args.workers or {1, cores}))
        for workers in counts:
            d = tmp / f"w{workers}"
            r = collect(args.env, kwargs, str(d), args.steps, num_workers=workers, progress=False)
            result["collect"][f"{workers}_workers"] = {"steps_per_s": r.steps_per_second, "seconds": r.seconds,
                                                       "episodes": r.episodes_written}
            print(f"{workers} worker(s): {r.steps_per_second:.0f} env steps/s")
        store = EpisodeStore.open(tmp / f"w{counts[-1]}")
        t = time.perf_counter()
        data = WindowDataset(store, 20, "all")
        load_s = time.perf_counter() - t
        g = torch.Generator().manual_seed(0)
        data.sample(64, g)
        t = time.perf_counter()
        n = 0
        while time.perf_counter() - t < 3.0:
            data.sample(64, g)
            n += 64
        result["dataset"] = {"load_seconds": load_s, "frames": int(data.frames.shape[0]),
                             "frames_per_s_loading": data.frames.shape[0] / load_s,
                             "window_length": 20, "batch_size": 64,
                             "windows_per_s": n / (time.perf_counter() - t)}
        print(f"loading {data.frames.shape[0]} frames: {load_s:.2f} s; sampling: {result['dataset']['windows_per_s']:.0f} windows/s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    atomic_write_json(Path(args.out), result)


if __name__ == "__main__":
    main()
