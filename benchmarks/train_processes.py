"""World-model training speed: one process using every core vs ``torchrun`` with one single-threaded
process per core, at the same global batch and the same result.

    python benchmarks/train_processes.py --data DATA_DIR --tokenizer TOKENIZER.pt \\
        --out benchmarks/results/train_processes.json

On CPU, N processes with ``grad_accum=A`` train the model that one process trains with
``grad_accum=N*A`` (each micro-batch draws from its own generator; ``tests/test_ddp.py``), so the two
variants below do identical work and differ only in how the cores share it:

* ``one_process``: ``worldsim train-world-model ... grad_accum=N`` with N threads;
* ``ddp``: ``torchrun --nproc_per_node N ... grad_accum=1``, one thread each, gloo all-reduce.

Every run starts fresh (its own run directory), the variants alternate over ``--rounds``, and the fp32
/ bf16 matmul peaks are measured just before each run. Windows/s is the training loop's own figure
(``samples_per_s`` in the checkpoint: encoding and start-up excluded); the process's wall time is
recorded too. The final weights of the two variants of each round are compared (they should agree to
float summation order).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from before_after import timed_run, training_overrides  # noqa: E402

from worldsim.io import atomic_write_json  # noqa: E402
from worldsim.models.checkpoint import load_checkpoint  # noqa: E402


def command(variant: str, n: int, common: list[str], port: int) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    if variant == "one_process":
        env["OMP_NUM_THREADS"] = str(n)
        return [sys.executable, "-m", "worldsim.cli", "train-world-model", *common,
                f"model.world_model_train.grad_accum={n}"], env
    env["OMP_NUM_THREADS"] = "1"
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--master_addr", "127.0.0.1",
            "--master_port", str(port), "-m", "worldsim.cli", "train-world-model", *common], env


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="an episode store")
    ap.add_argument("--tokenizer", required=True, help="a tokenizer trained on it")
    ap.add_argument("--model", default="small")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--extra", nargs="*", default=[], help="more Hydra overrides for every run")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    n = args.processes
    out = {"command": " ".join(sys.argv), "processes": n, "model": args.model, "steps": args.steps,
           "variants": {"one_process": f"1 process, {n} threads, grad_accum={n}",
                        "ddp": f"torchrun, {n} processes of 1 thread, grad_accum=1"}, "rounds": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = ["one_process", "ddp"] if r % 2 == 0 else ["ddp", "one_process"]
            row: dict = {}
            for variant in order:
                run_dir = Path(tmp) / f"{variant}_{r}"
                common = training_overrides(args.model, args.data, args.tokenizer, run_dir, args.steps, args.extra)
                cmd, env = command(variant, n, common, 29500 + r)
                timing = timed_run(cmd, env)
                metrics = load_checkpoint(run_dir / "world_model.pt", kind="world_model")["metrics"]
                row[variant] = {"windows_per_s": metrics["samples_per_s"], "train_seconds": metrics["train_seconds"],
                                **timing}
                print(r, variant, row[variant], flush=True)
            a, b = (load_checkpoint(Path(tmp) / f"{v}_{r}" / "world_model.pt", kind="world_model")["model"]
                    for v in ("one_process", "ddp"))
            row["max_abs_weight_difference"] = max(float((a[k] - b[k]).abs().max()) for k in a if a[k].is_floating_point())
            out["rounds"].append(row)
            atomic_write_json(Path(args.out), out)  # partial results survive a kill
    for v in ("one_process", "ddp"):
        rates = sorted(x[v]["windows_per_s"] for x in out["rounds"])
        out[f"median_windows_per_s_{v}"] = rates[len(rates) // 2]
    atomic_write_json(Path(args.out), out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
