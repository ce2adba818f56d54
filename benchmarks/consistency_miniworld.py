"""The MiniWorld train-and-bench recipe of the consistency benchmark, end to end on CPU:

* ``MiniWorld-OneRoom-v0`` through worldsim's adapter (64×64), recorded with the ``revisit``
  policy (sticky-random segments mixed with excursions that come back: turn away, turn back);
  training play with seed 0 and held-out play with seed 1, in two stores;
* tokenizer and world model of the ``small`` preset at the default run's budget;
* ``worldsim evaluate-world-model`` on the held-out play and ``worldsim bench-consistency`` (the
  probe suite: revisits, loops, object permanence; against repeat-last and the tokenizer floor).

``--task MiniWorld-WallWalk-v0`` runs the same recipe in the occlusion scene (a wall hides the box
while the agent walks by: the suite's walk-by probes instead of the turn-aways).

    python benchmarks/consistency_miniworld.py --root runs/benchmark/miniworld \\
        --out benchmarks/results/consistency_miniworld.json

With pose memory (worldsim/models/memory.py), on the same play and the same tokenizer:

    python benchmarks/consistency_miniworld.py --root runs/benchmark/miniworld_memory \\
        --tokenizer runs/benchmark/miniworld/run/tokenizer.pt --extra model.memory_span=64 \\
        --out benchmarks/results/consistency_miniworld_memory.json

and with the one-frame context of the ``small_memory`` preset (``--model small_memory`` is the same as
``--extra model.memory_span=64 model.dit.context_frames=1 model.dit.stack_frames=1``, the overrides
recorded in benchmarks/results/consistency_miniworld_memory_c1.json).

Each stage resumes (the CLI's own resume), so an interrupted recipe is finished by re-running the
same command. The JSON keeps the commands, wall times and the matmul peaks measured before and after.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch

from worldsim.cli import main as cli
from worldsim.io import atomic_write_json

sys.path.insert(0, str(Path(__file__).parent))
from dream_throughput import matmul_peak  # noqa: E402


def run(args: list[str]) -> float:
    print("$ worldsim " + " ".join(args), flush=True)
    t = time.perf_counter()
    if cli(args) != 0:
        raise SystemExit(f"worldsim {' '.join(args)} failed")
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="runs/benchmark/miniworld")
    ap.add_argument("--task", default="MiniWorld-OneRoom-v0")
    ap.add_argument("--model", default="small", help="model preset (tiny: a smoke run)")
    ap.add_argument("--train-steps", type=int, default=30_000)
    ap.add_argument("--heldout-steps", type=int, default=3_000)
    ap.add_argument("--tokenizer-steps", type=int, default=1500)
    ap.add_argument("--world-model-steps", type=int, default=1000)
    ap.add_argument("--scenes", type=int, default=4, help="probe scenes (each holds every probe of the suite)")
    ap.add_argument("--extra", nargs="*", default=[], help="more Hydra overrides for both trainings")
    ap.add_argument("--tokenizer", default=None,
                    help="a trained tokenizer to use instead of training one (copied into the run; an A/B of world "
                         "models on the same play: collection is seeded, so --root of another arm records the same frames)")
    ap.add_argument("--out", default="benchmarks/results/consistency_miniworld.json")
    args = ap.parse_args()

    root = Path(args.root)
    env = ["env=miniworld", f"env.kwargs.task={args.task}"]
    data, held, run_dir = root / "data", root / "heldout", root / "run"
    common = [*env, f"model={args.model}", f"run_dir={run_dir}", "device=cpu"]
    commands = {
        "collect_train": ["collect", *env, "policy=revisit", f"steps={args.train_steps}", "seed=0", f"data_dir={data}"],
        "collect_heldout": ["collect", *env, "policy=revisit", f"steps={args.heldout_steps}", "seed=1",
                            f"data_dir={held}"],
        "train_tokenizer": ["train-tokenizer", *common, f"data_dir={data}",
                            f"model.tokenizer_train.steps={args.tokenizer_steps}", *args.extra],
        "train_world_model": ["train-world-model", *common, f"data_dir={data}",
                              f"model.world_model_train.steps={args.world_model_steps}", *args.extra],
        "evaluate": ["evaluate-world-model", *common, f"data_dir={held}", "split=all", "num_windows=100",
                     "horizons=[1,2,4,8,16]", f"out_dir={run_dir}/eval"],
        "consistency": ["bench-consistency", *common, f"checkpoint={run_dir}/world_model.pt", f"count={args.scenes}",
                        f"out_dir={run_dir}/consistency"],
    }

    def peaks() -> dict:
        return {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}

    if args.tokenizer and not (run_dir / "tokenizer.pt").exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(args.tokenizer, run_dir / "tokenizer.pt")  # train-tokenizer then finds it trained
    before = peaks()
    seconds = {name: run(cmd) for name, cmd in commands.items()}
    after = peaks()
    from worldsim.models.checkpoint import load_checkpoint

    result = {
        "task": args.task, "model": args.model, "extra": args.extra, "tokenizer_from": args.tokenizer, "commands": {k: "worldsim " + " ".join(v) for k, v in commands.items()},
        "wall_seconds": seconds, "matmul_gflops": {"before": before, "after": after},
        "tokenizer": load_checkpoint(run_dir / "tokenizer.pt")["metrics"],
        "world_model": load_checkpoint(run_dir / "world_model.pt")["metrics"],
        "evaluation": json.loads((run_dir / "eval" / "world_model_eval.json").read_text()),
        "consistency": json.loads((run_dir / "consistency" / "consistency.json").read_text()),
    }
    atomic_write_json(Path(args.out), result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
