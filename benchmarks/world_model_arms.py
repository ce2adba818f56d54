"""An A/B/... of world-model training recipes: same data, same tokenizer, same budget, same held-out
windows; each arm trained, then scored at several sampling steps (benchmarks/sampling_steps.py).

    python benchmarks/world_model_arms.py --data data/boxing --heldout data/boxing_heldout \\
        --tokenizer runs/benchmark/boxing_small/tokenizer.pt --root runs/arms/rollout_windows \\
        --common env=boxing model=small model.world_model_train.steps=1000 \\
        --arm base: --arm own4:model.world_model_train.rollout_windows=4 \\
        --horizons 1 2 4 8 16 32 64 --sampling-steps 1 --out benchmarks/results/rollout_windows_boxing.json

``--arm NAME:OVERRIDES`` (overrides separated by spaces inside one quoted argument; empty after the
colon = the common recipe alone); an arm's own ``tokenizer=PATH`` replaces ``--tokenizer`` for it
(arms that differ in their tokenizer). Arms train one after the other (never two at once on one
machine); every stage resumes (training from its checkpoints, scoring per sampling-step count), so
an interrupted comparison is finished by re-running the same command. The JSON (``arms``) prints
with ``python benchmarks/tables.py OUT``; each arm keeps its train command, training seconds and
the matmul peaks measured in its scoring run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from worldsim.io import atomic_write_json

HERE = Path(__file__).parent


def run(cmd: list[str]) -> None:
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--heldout", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--root", required=True, help="one folder per arm is made here")
    ap.add_argument("--common", nargs="*", default=[], help="Hydra overrides of every arm")
    ap.add_argument("--arm", action="append", required=True, help="NAME:OVERRIDES (space-separated)")
    ap.add_argument("--sampling-steps", type=int, nargs="+", default=[1])
    ap.add_argument("--horizons", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--windows", type=int, default=100)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    arms = {}
    for spec in args.arm:
        name, sep, overrides = spec.partition(":")
        if not sep or not name or not name.isidentifier():
            raise SystemExit(f"--arm {spec!r}: give NAME:OVERRIDES, e.g. base: or own4:model.world_model_train.rollout_windows=4")
        arms[name] = overrides.split()
    worldsim = str(Path(sys.executable).with_name("worldsim"))
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {}
    result.update({"what": "world-model training recipes compared on the same data, tokenizer, budget and held-out "
                           "windows", "command": "python benchmarks/world_model_arms.py " + " ".join(sys.argv[1:]),
                   "data": args.data, "heldout": args.heldout, "tokenizer": args.tokenizer})
    result.setdefault("arms", {})
    for name, overrides in arms.items():
        folder = Path(args.root) / name
        ckpt = folder / "world_model.pt"
        tokenizer = [o for o in overrides if o.startswith("tokenizer=")] or [f"tokenizer={args.tokenizer}"]
        train = [worldsim, "train-world-model", *args.common, *(o for o in overrides if not o.startswith("tokenizer=")),
                 f"data_dir={args.data}", *tokenizer, f"out={ckpt}", f"run_dir={folder}", "progress=false"]
        run(train)
        scores = folder / "sampling_steps.json"
        score = [sys.executable, str(HERE / "sampling_steps.py"), "--checkpoint", str(ckpt), "--data", args.heldout,
                 "--windows", str(args.windows), "--steps", *map(str, args.sampling_steps),
                 "--horizons", *map(str, args.horizons), "--out", str(scores)]
        run(score)
        from worldsim.models.checkpoint import load_checkpoint

        metrics = load_checkpoint(ckpt)["metrics"]
        s = json.loads(scores.read_text())
        result["arms"][name] = {
            "overrides": overrides, "train_command": " ".join(train[1:]), "eval_command": " ".join(score[1:]),
            "train_seconds": metrics.get("train_seconds"), "train_windows_per_s": metrics.get("samples_per_s"),
            "matmul_gflops": s["matmul_gflops"], "precision": s["precision"],
            "by_sampling_steps": {n: {"model": r["evaluation"]["rollouts"]["model"],
                                      "repeat_last": r["evaluation"]["rollouts"]["repeat_last"],
                                      "tokenizer_floor": r["evaluation"]["rollouts"]["tokenizer_floor"],
                                      "controllability_db": r["evaluation"]["rollouts"]["controllability_db"],
                                      "heads": r["evaluation"].get("heads"),
                                      "dream_steps_per_s_pixels_batch64": r["dream_steps_per_s_pixels"]}
                                  for n, r in s["runs"].items()},
        }
        atomic_write_json(out, result)
    print(f"wrote {out}; table: python benchmarks/tables.py {out}")


if __name__ == "__main__":
    main()
