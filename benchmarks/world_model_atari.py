"""The world-model benchmark on Atari, end to end, with the recipe of our issue tracker:

* ``ALE/<Game>-v5`` through worldsim's adapter: frame skip 4 (max-pool), sticky actions 0.25,
  minimal action set, 64×64 RGB with area interpolation;
* "sticky random" play (a uniform action held 1-9 steps): 60,000 training steps with seed 0 and
  10,000 held-out steps with seed 1, in two separate stores;
* tokenizer and world model of the ``small`` preset trained on CPU;
* 100 held-out windows of 4 real context frames then 16 frames generated under the recorded actions.

    python benchmarks/world_model_atari.py --game boxing
    python benchmarks/world_model_atari.py --game pong --train-steps 60000

Writes ``benchmarks/results/world_model_<game>.json`` (all metrics, timings, commands) and the
plot beside it. Each stage resumes, so an interrupted benchmark can be re-run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from worldsim.cli import main as cli
from worldsim.io import atomic_write_json


def run(args: list[str]) -> float:
    print("$ worldsim " + " ".join(args), flush=True)
    t = time.perf_counter()
    code = cli(args)
    if code != 0:
        raise SystemExit(f"worldsim {' '.join(args)} failed with exit code {code}")
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--game", default="boxing")
    ap.add_argument("--model", default="small")
    ap.add_argument("--train-steps", type=int, default=60_000)
    ap.add_argument("--heldout-steps", type=int, default=10_000)
    ap.add_argument("--data-root", default="data")
    ap.add_argument("--run-root", default="runs/benchmark")
    ap.add_argument("--windows", type=int, default=100)
    ap.add_argument("--extra", nargs="*", default=[], help="more Hydra overrides for both trainings")
    ap.add_argument("--out-dir", default="benchmarks/results")
    ap.add_argument("--tag", default="", help="suffix of the run folder and result files, for variants")
    args = ap.parse_args()

    env = "atari" if args.game not in ("boxing", "pong", "breakout") else args.game
    env_args = [f"env={env}"] + ([f"env.kwargs.game={args.game}"] if env == "atari" else [])
    data = f"{args.data_root}/{args.game}"
    held = f"{args.data_root}/{args.game}_heldout"
    suffix = f"_{args.tag}" if args.tag else ""
    run_dir = f"{args.run_root}/{args.game}_{args.model}{suffix}"
    common = env_args + [f"model={args.model}", f"run_dir={run_dir}", "device=cpu"]
    commands = {
        "collect_train": ["collect", *env_args, f"steps={args.train_steps}", "seed=0", f"data_dir={data}"],
        "collect_heldout": ["collect", *env_args, f"steps={args.heldout_steps}", "seed=1", f"data_dir={held}"],
        "train_tokenizer": ["train-tokenizer", *common, f"data_dir={data}", *args.extra],
        "train_world_model": ["train-world-model", *common, f"data_dir={data}", *args.extra],
        "evaluate": ["evaluate-world-model", *common, f"data_dir={held}", "split=all", f"num_windows={args.windows}",
                     "horizons=[1,2,4,8,16]", f"out_dir={run_dir}/eval"],
    }
    import torch
    from dream_throughput import matmul_peak

    def peaks() -> dict:
        return {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}

    peak_before = peaks()  # speeds mean little without the machine's matmul peak beside them
    seconds = {name: run(cmd) for name, cmd in commands.items()}
    peak_after = peaks()
    ev = json.loads(Path(run_dir, "eval", "world_model_eval.json").read_text())
    from worldsim.models.checkpoint import load_checkpoint

    tok = load_checkpoint(Path(run_dir, "tokenizer.pt"))
    wm = load_checkpoint(Path(run_dir, "world_model.pt"))
    result = {
        "game": args.game, "model": args.model, "commands": {k: "worldsim " + " ".join(v) for k, v in commands.items()},
        "wall_seconds": seconds, "matmul_gflops": {"before": peak_before, "after": peak_after},
        "cpu_training_minutes": (tok["metrics"].get("train_seconds", 0) + wm["metrics"].get("train_seconds", 0)) / 60,
        "tokenizer": tok["metrics"], "world_model": wm["metrics"], "evaluation": ev,
    }
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result["extra_overrides"] = args.extra
    atomic_write_json(out / f"world_model_{args.game}{suffix}.json", result)
    shutil.copy(Path(run_dir, "eval", "world_model_eval.png"), out / f"world_model_{args.game}{suffix}.png")
    print(f"wrote {out / f'world_model_{args.game}{suffix}.json'}")


if __name__ == "__main__":
    main()
