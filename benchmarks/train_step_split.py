"""Where a world-model training step's time goes: the real ``train-world-model`` on a real store,
with and without the heads' extra work, alternating.

A training step is the DiT's teacher-forced diffusion loss on ``batch_size`` windows plus two
things that train only the reward / episode-end heads: ``head_pairs`` extra real transitions
through the heads, and ``head_rollouts`` dreams advanced one frame by the EMA model whose
generated frames the heads learn to read (worldsim/training/head_rollouts.py). Each variant trains
the same model from scratch for ``--steps`` steps in a fresh process; its windows/s is the
trainer's own figure (the loop only: encoding the store and writing the checkpoint are not
counted). Variants alternate over ``--rounds`` rounds and every run carries the fp32 and bf16
matmul peaks measured just before it, so the split holds on this machine, now.

    python benchmarks/train_step_split.py --data-dir data/boxing --tokenizer runs/boxing/small/tokenizer.pt \\
        --steps 150 --rounds 2 --precision fp32 --out benchmarks/results/train_step_split.json env=boxing

Trailing arguments are Hydra overrides for every variant (the env and model the store and the
tokenizer were made with).
"""

from __future__ import annotations

import argparse
import json
import statistics
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from before_after import timed_run, training_overrides  # noqa: E402

from worldsim.io import atomic_write_json  # noqa: E402
from worldsim.models.checkpoint import load_checkpoint  # noqa: E402

VARIANTS = {
    "full": [],
    "no_head_rollouts": ["model.world_model_train.head_rollouts=0"],
    "no_head_pairs": ["model.world_model_train.head_pairs=0"],
    "dit_only": ["model.world_model_train.head_rollouts=0", "model.world_model_train.head_pairs=0"],
}


def run_variant(name: str, args: argparse.Namespace, tmp: Path) -> dict:
    run_dir = tmp / name
    shutil.rmtree(run_dir, ignore_errors=True)
    extra = [f"precision={args.precision}", *args.overrides, *VARIANTS[name]]
    cmd = [sys.executable, "-m", "worldsim.cli", "train-world-model",
           *training_overrides(args.model, args.data_dir, args.tokenizer, run_dir, args.steps, extra)]
    timing = timed_run(cmd)
    metrics = load_checkpoint(run_dir / "world_model.pt", kind="world_model")["metrics"]
    return {"windows_per_s": metrics["samples_per_s"], "train_seconds": metrics["train_seconds"],
            "process_seconds": timing["wall_seconds"], "fp32_gflops": timing["fp32_peak_gflops"],
            "bf16_gflops": timing["bf16_peak_gflops"]}


def summarise(runs: dict[str, list[dict]]) -> dict:
    med = {k: statistics.median(r["windows_per_s"] for r in v) for k, v in runs.items() if v}
    out = {"windows_per_s_median": med}
    if "full" in med:  # a part's time per window = the difference its absence makes (measured parts only)
        sec = {k: 1 / v for k, v in med.items()}
        out["seconds_per_window"] = sec
        parts = {part: sec["full"] - sec[without] for part, without in
                 (("head_rollouts", "no_head_rollouts"), ("head_pairs", "no_head_pairs")) if without in sec}
        if "dit_only" in sec:
            parts["dit_and_rest"] = sec["dit_only"]
        out["share_of_full_step"] = {k: v / sec["full"] for k, v in parts.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", required=True, help="an episode store (worldsim collect)")
    ap.add_argument("--tokenizer", required=True, help="a tokenizer checkpoint trained on that store's env")
    ap.add_argument("--model", default="small", help="the model preset")
    ap.add_argument("--steps", type=int, default=150, help="training steps per run (below 500: no checkpoint on the way)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--out", default="benchmarks/results/train_step_split.json")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for every variant (env, model options)")
    args = ap.parse_args()
    for path in (args.data_dir, args.tokenizer):
        if not Path(path).exists():
            sys.exit(f"{path} does not exist: give --data-dir an episode store and --tokenizer a tokenizer "
                     "checkpoint (e.g. a `worldsim run` or `worldsim loop` run directory's data/ and tokenizer.pt).")
    runs: dict[str, list[dict]] = {k: [] for k in args.variants}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = args.variants if r % 2 == 0 else args.variants[::-1]  # alternate who goes first
            for name in order:
                runs[name].append(run_variant(name, args, Path(tmp)))
                print(name, json.dumps(runs[name][-1]), flush=True)
                result = {"what": __doc__.split("\n\n")[0], "command": " ".join(["python", *sys.argv]),
                          "steps": args.steps, "variants": {k: VARIANTS[k] for k in args.variants},
                          "runs": runs, "partial": r < args.rounds - 1 or name != order[-1], **summarise(runs)}
                atomic_write_json(Path(args.out), result)
    print(json.dumps(summarise(runs), indent=1))


if __name__ == "__main__":
    main()
