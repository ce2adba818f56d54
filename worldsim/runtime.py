"""Where and how precisely models run: device choice and bf16 autocast.

Used by training, the dream and evaluation alike (so it sits below all three).
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name} was asked for, but CUDA is not available here. Use device=cpu or device=auto.")
    return dev


def flush_denormals() -> None:
    """Treat subnormal floats (|x| < 1.2e-38) as zero on the CPU (flush-to-zero / denormals-are-zero).

    ``import worldsim`` calls it, and so does every command and training loop. The flag is per
    thread: torch's worker threads take it from the main thread when they start (at the first
    parallel op), so it must be set before anything is computed; set after, only the main thread
    flushes (measured: the slowdown below came back). Subnormal arithmetic is ~100x slower on x86:
    measured, a `small_memory` world model on MiniWorld-WallWalk (no rewards, no episode ends, so the
    heads' losses go to ~0 and their gradients underflow) slowed from 0.9 to 2.3 s per step after 50
    steps and to 7-9 s by step 75 without it, and stayed at 0.8-1.0 s with it (docs/benchmarks.md).
    Values that small carry nothing a float32 model can use."""
    torch.set_flush_denormal(True)


@functools.cache  # read /proc/cpuinfo once, not on every step
def cpu_has_fast_bf16() -> bool:
    """True when the CPU multiplies bf16 matrices in hardware (AVX-512 BF16 or AMX): there bf16
    matmuls run ~4× faster than fp32; without them bf16 is emulated and far slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` on CUDA and on CPUs with hardware bf16, else ``fp32``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" or (device.type == "cpu" and cpu_has_fast_bf16()) else "fp32"


def autocast(device: torch.device, precision: str = "auto"):
    """bf16 autocast (weights and reductions stay fp32) or a no-op, per :func:`resolve_precision`."""
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
