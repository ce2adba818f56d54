"""Checkpoints: one file holding weights, the resolved config, the env/action-space record, the
dataset record and (for resuming) the optimiser and random-generator states.

Saved with ``torch.save`` of plain containers and tensors only, written atomically, and loaded with
``torch.load(weights_only=True)``: loading a checkpoint from someone else cannot run code.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

import worldsim
from worldsim.io import atomic_write_with

FORMAT = "worldsim-checkpoint"
VERSION = 1
KINDS = ("tokenizer", "world_model")


class CheckpointError(RuntimeError):
    pass


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (kind, config, model, ...) to ``path`` atomically (temp file + rename)."""
    if payload.get("kind") not in KINDS:
        raise ValueError(f"checkpoint kind must be one of {KINDS}, got {payload.get('kind')!r}.")
    data = {"format": FORMAT, "version": VERSION, "worldsim_version": worldsim.__version__, **payload}
    return atomic_write_with(path, lambda tmp: torch.save(data, tmp))


def load_checkpoint(path: str | Path, kind: str | None = None, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint; ``kind`` checks what it holds."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No checkpoint at {path}. Train one first (worldsim train-tokenizer / train-world-model) "
                                "or fix the path.")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError) as e:
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}). "
            "It may be truncated (an interrupted copy) or not a worldsim checkpoint; restore or retrain it."
        ) from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a worldsim checkpoint (no '{FORMAT}' header).")
    if data.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {data.get('version')} (written by worldsim "
            f"{data.get('worldsim_version')}); this worldsim {worldsim.__version__} reads version {VERSION}. "
            "Use the worldsim version that wrote it, or retrain."
        )
    if kind is not None and data.get("kind") != kind:
        raise CheckpointError(f"{path} holds a {data.get('kind')} checkpoint, but a {kind} checkpoint is needed here.")
    return data


def check_env_matches(data: dict[str, Any], env_meta: dict[str, Any], path: str | Path) -> None:
    """Raise if a checkpoint was trained on another env / frame size / action set than ``env_meta``."""
    have = data.get("env", {})
    diffs = [f"{k}: checkpoint {have.get(k)!r} vs requested {env_meta.get(k)!r}"
             for k in ("env", "frame_shape", "num_actions", "action_meanings")
             if k in env_meta and have.get(k) != env_meta.get(k)]
    g_have, g_new = have.get("env_kwargs", {}).get("game"), env_meta.get("env_kwargs", {}).get("game")
    if g_new is not None and g_have != g_new:
        diffs.append(f"game: checkpoint {g_have!r} vs requested {g_new!r}")
    if diffs:
        raise CheckpointError(f"{path} was trained on a different environment:\n  " + "\n  ".join(diffs) +
                              "\nUse a checkpoint trained on this env, or change env=... to match it.")


def describe_checkpoint(path: str | Path) -> dict[str, Any]:
    data = load_checkpoint(path)
    n_params = sum(v.numel() for v in data.get("model", {}).values() if isinstance(v, torch.Tensor))
    return {
        "kind": data["kind"], "worldsim_version": data.get("worldsim_version"), "step": data.get("step"),
        "parameters": n_params, "env": data.get("env"), "dataset": data.get("dataset"),
        "config": data.get("config"), "metrics": data.get("metrics"),
    }
