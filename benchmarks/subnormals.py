"""World-model training with and without flushing subnormal floats to zero, timed per interval.

    python benchmarks/subnormals.py --data DATA_DIR --tokenizer TOKENIZER.pt \\
        --extra env=miniworld env.kwargs.task=MiniWorld-WallWalk-v0 \\
        --out benchmarks/results/subnormals.json

On a task without rewards or episode ends the heads' losses go to ~0 and their gradients underflow
into subnormal floats, whose arithmetic x86 CPUs run far slower (docs/benchmarks.md "Subnormal
floats"). ``import worldsim`` flushes them to zero since session 19. Two variants of the same
training, each in a fresh process:

* ``flush``: the CLI as shipped (``worldsim train-world-model ...``);
* ``no_flush``: the same command after ``torch.set_flush_denormal(False)`` with the flush made a
  no-op, before anything is computed: what every training did before session 19.

The variants alternate over ``--rounds`` with the fp32 / bf16 matmul peaks measured just before each
run. The seconds per step of every ``--interval`` steps come from the training loop's own log
(``wm/samples_per_s`` is cumulative from the loop's start: encoding and start-up excluded). Results
are written after every run, so a killed benchmark keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from before_after import timed_run, training_overrides  # noqa: E402

from worldsim.io import atomic_write_json  # noqa: E402
from worldsim.models.checkpoint import load_checkpoint  # noqa: E402

NO_FLUSH = ("import sys, torch, worldsim\n"
            "torch.set_flush_denormal(False)\n"
            "torch.set_flush_denormal = lambda mode: True  # every later flush is a no-op\n"
            "from worldsim.cli import main\n"
            "sys.argv = ['worldsim', *sys.argv[1:]]\n"
            "sys.exit(main())\n")


def command(variant: str, args: list[str]) -> list[str]:
    if variant == "flush":
        return [sys.executable, "-m", "worldsim.cli", "train-world-model", *args]
    return [sys.executable, "-c", NO_FLUSH, "train-world-model", *args]


def seconds_per_step(metrics_file: Path, batch: int) -> list[dict]:
    """Per logged interval: steps, seconds per step and the losses at its end, from the cumulative
    samples/s the loop logs (elapsed = step * batch / rate)."""
    rows, last_step, last_t = [], 0, 0.0
    for line in metrics_file.read_text().splitlines():
        rec = json.loads(line)
        t = rec["step"] * batch / rec["wm/samples_per_s"]
        rows.append({"steps": f"{last_step + 1}-{rec['step']}", "s_per_step": (t - last_t) / (rec["step"] - last_step),
                     "reward_loss": rec["wm/reward_loss"], "end_loss": rec["wm/end_loss"],
                     "diffusion_loss": rec["wm/diffusion_loss"]})
        last_step, last_t = rec["step"], t
    return rows


def windows_per_step(run_dir: Path) -> int:
    """Windows per optimizer step, from the checkpoint's resolved config."""
    train = load_checkpoint(run_dir / "world_model.pt", kind="world_model")["config"]["train"]
    return int(train["batch_size"]) * int(train["grad_accum"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="an episode store")
    ap.add_argument("--tokenizer", required=True, help="a tokenizer trained on it")
    ap.add_argument("--model", default="small_memory")
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--interval", type=int, default=10, help="steps per timed interval")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--extra", nargs="*", default=[], help="more Hydra overrides for every run (env=...)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = {"command": " ".join(sys.argv), "model": args.model, "steps": args.steps, "interval": args.interval,
           "variants": {"flush": "worldsim as shipped (subnormals flushed to zero)",
                        "no_flush": "the same command with the flush disabled before any computation"},
           "rounds": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = ["no_flush", "flush"] if r % 2 == 0 else ["flush", "no_flush"]
            row: dict = {}
            for variant in order:
                run_dir = Path(tmp) / f"{variant}_{r}"
                common = training_overrides(args.model, args.data, args.tokenizer, run_dir, args.steps,
                                            ["precision=fp32", f"++model.world_model_train.log_every={args.interval}",
                                             *args.extra])
                timing = timed_run(command(variant, common))
                row[variant] = {"intervals": seconds_per_step(run_dir / "world_model" / "metrics.jsonl",
                                                              windows_per_step(run_dir)),
                                **timing}
                print(r, variant, [round(x["s_per_step"], 2) for x in row[variant]["intervals"]], flush=True)
                atomic_write_json(Path(args.out), {**out, "partial": True, "rounds": [*out["rounds"], row]})
            out["rounds"].append(row)
    atomic_write_json(Path(args.out), out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
