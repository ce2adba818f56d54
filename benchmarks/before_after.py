"""Measure the working tree beside an earlier git revision on the same machine, in one run.

The CPU behind a machine of this kind varies between sessions and drifts within one, so a figure
from another day is no "before": both variants run here, each measurement in a fresh process,
alternating which goes first, and every measurement carries the bf16 matmul peak taken with it.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import torch

ROOT = Path(__file__).resolve().parents[1]


def matmul_peak(dtype: torch.dtype, seconds: float = 2.0) -> float:
    """GFLOP/s of a 2048×1024 @ 1024×2048 matmul on this machine, now."""
    a, b = torch.randn(2048, 1024, dtype=dtype), torch.randn(1024, 2048, dtype=dtype)
    a @ b
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        a @ b
        n += 1
    return 2 * 2048 * 1024 * 2048 * n / (time.perf_counter() - t) / 1e9


@contextlib.contextmanager
def worktree(ref: str) -> Iterator[Path]:
    """A temporary checkout of ``ref`` (removed afterwards)."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), ref], cwd=ROOT, check=True, capture_output=True)
        try:
            yield tree
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)


def run_with(tree: Path, args: list[str]) -> str:
    """Run ``python args...`` importing worldsim from ``tree``; returns the last line of its stdout."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, *args], env=env, check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def alternate(before: Path, rounds: int, measure: Callable[[Path], dict], label: str = "") -> dict:
    """``measure(tree)`` ``rounds`` times for the checkout ``before`` (see :func:`worktree`) and for
    the working tree, alternating the order; returns every run and the per-key medians of each variant."""
    return alternate_variants(("before", "after"), rounds, lambda w: measure(before if w == "before" else ROOT), label)


def alternate_variants(names: tuple[str, str], rounds: int, measure: Callable[[str], dict], label: str = "") -> dict:
    """``measure(name)`` ``rounds`` times for each of two variants, alternating which goes first;
    returns every run (``runs``) and the per-key medians of each variant (under its name)."""
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(rounds):
        for which in (names if r % 2 == 0 else names[::-1]):
            runs[which].append(measure(which))
            print(f"{label} {which}: {runs[which][-1]}", flush=True)
    med = {w: {k: statistics.median(m[k] for m in ms) for k in ms[0] if isinstance(ms[0][k], (int, float))}
           for w, ms in runs.items()}
    return {"rounds": rounds, "runs": runs, **med}


def per_checkpoint_steps(ap, args) -> list:
    """``--labels`` and ``--sampling-steps`` checked against ``--checkpoints`` (one each); the steps,
    ``None`` (each model's own) when not given."""
    if len(args.labels) != len(args.checkpoints):
        ap.error("give one label per checkpoint")
    steps = args.sampling_steps or [None] * len(args.checkpoints)
    if len(steps) != len(args.checkpoints):
        ap.error("give one --sampling-steps value per checkpoint")
    return steps


def training_overrides(model: str, data: str, tokenizer: str, run_dir: Path, steps: int, extra: list[str]) -> list[str]:
    """A fresh, quiet ``worldsim train-world-model`` into ``run_dir`` (the training-speed benchmarks)."""
    return [f"model={model}", f"data_dir={data}", f"tokenizer={tokenizer}", f"run_dir={run_dir}",
            f"out={run_dir / 'world_model.pt'}", "progress=false", "device=cpu",
            f"model.world_model_train.steps={steps}", *extra]


def timed_run(cmd: list[str], env: dict | None = None) -> dict:
    """The fp32 / bf16 matmul peaks measured just before, then ``cmd``'s wall seconds; exits with the
    command's stderr if it fails."""
    peaks = {"fp32_peak_gflops": matmul_peak(torch.float32, 1.0), "bf16_peak_gflops": matmul_peak(torch.bfloat16, 1.0)}
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd[:6])} ... failed:\n{proc.stderr[-3000:]}")
    return {"wall_seconds": time.perf_counter() - t, **peaks}
