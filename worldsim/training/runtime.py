"""What every training loop needs besides its model: distributed setup, the learning-rate schedule,
EMA weights, random-generator states for exact resumes, and the metric logger. (Device and
precision choice live in :mod:`worldsim.runtime`, shared with inference.)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: torch.device) -> Distributed:
    """Join the process group when launched by ``torchrun`` (WORLD_SIZE set); else single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local)
    return Distributed(dist.get_rank(), dist.get_world_size(), local)


def cleanup_distributed(d: Distributed) -> None:
    if d.enabled and dist.is_initialized():
        dist.barrier()  # every rank done (rank 0 may still be saving): tearing gloo down early aborts the others
        dist.destroy_process_group()


def rng_states() -> dict[str, object]:
    """The global torch generators (CPU, and every CUDA device), for a checkpoint."""
    states: dict[str, object] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, object]) -> None:
    torch.set_rng_state(states["cpu"])  # type: ignore[arg-type]
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():  # type: ignore[arg-type]
        torch.cuda.set_rng_state_all(states["cuda"])  # type: ignore[arg-type]


def lr_factor(step: int, warmup: int, total: int, min_factor: float = 0.1) -> float:
    """Linear warm-up then cosine decay to ``min_factor`` of the peak."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema ← decay · ema + (1 − decay) · model, parameter by parameter (buffers copied)."""
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


class Logger:
    """Namespaced scalars (``wm/loss``, ``tok/psnr``) to TensorBoard and a JSON-lines file."""

    def __init__(self, run_dir: str | Path, enabled: bool = True) -> None:
        self.enabled = enabled
        self.writer = None
        self.path = Path(run_dir) / "metrics.jsonl"
        if enabled:
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(Path(run_dir) / "tb"))
            except ImportError:  # tensorboard is optional at run time
                self.writer = None

    def log(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        import json

        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **{k: float(v) for k, v in scalars.items()}}) + "\n")
        if self.writer is not None:
            for k, v in scalars.items():
                self.writer.add_scalar(k, float(v), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
