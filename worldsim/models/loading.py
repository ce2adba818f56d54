"""Build models from presets and load trained ones for inference (the dream, evaluation, agents).

Training writes the checkpoints (:mod:`worldsim.training`); everything that only *uses* a model
loads it from here, so inference code never imports the training loops.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from worldsim.config import dataclass_from_dict
from worldsim.models.checkpoint import CheckpointError, load_checkpoint
from worldsim.models.tokenizer import Tokenizer, TokenizerConfig
from worldsim.models.world_model import WorldModel, WorldModelConfig

# Options that earlier versions had and that lost their measurements (docs/world_model.md, "Experiments
# that lost"): a checkpoint that used the value that is now built in loads; any other value cannot.
REMOVED_OPTIONS = {
    "dit": {"attention": "window", "spatial_rope": False, "embed_kernel": 0, "action_tokens": True,
            "mix_ffn": True, "zero_init_noisy": True, "action_token_std": 0.02, "local_head": 0},
    "model": {"heads_pool": "mean", "predict_residual": True, "motion_weight": 0.0, "motion_mask": "context"},
}


def _drop_removed(cfg: dict[str, Any], path: str | Path) -> dict[str, Any]:
    cfg = {**cfg, "dit": dict(cfg.get("dit", {}))}
    for where, options in REMOVED_OPTIONS.items():
        node = cfg["dit"] if where == "dit" else cfg
        for key, built_in in options.items():
            if key in node:
                value = node.pop(key)
                if value != built_in:
                    raise CheckpointError(
                        f"{path} was trained with {where}.{key}={value!r}, an option this worldsim no longer has "
                        f"(it now always behaves as {key}={built_in!r}). Load it with the worldsim version that "
                        "wrote it, or retrain with this one.")
    # models from before dit.gelu existed used the tanh approximation
    cfg["dit"].setdefault("gelu", "tanh")
    return cfg


def world_model_config(model_cfg: dict[str, Any], tokenizer_cfg: dict[str, Any], num_actions: int) -> WorldModelConfig:
    """Compose the world-model config from a preset's ``dit``/``edm``/loss options and the tokenizer's."""
    extra = {k: v for k, v in model_cfg.items() if k not in ("dit", "edm", "tokenizer")}
    dit = {**model_cfg.get("dit", {}), "num_actions": num_actions, "latent_channels": tokenizer_cfg["latent_channels"]}
    return dataclass_from_dict(WorldModelConfig, {"tokenizer": tokenizer_cfg, "dit": dit,
                                                  "edm": model_cfg.get("edm", {}), **extra})


def saved_world_model_config(ckpt: dict[str, Any], path: str | Path) -> WorldModelConfig:
    """The config a world-model checkpoint was trained with, in this version's terms (options added
    since take the value the checkpoint's model had: their defaults, or what the checkpoint implies)."""
    try:
        return dataclass_from_dict(WorldModelConfig, _drop_removed(ckpt["config"]["model"], path))
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: its model config does not fit this worldsim ({e})") from e


def load_tokenizer(path: str | Path, device: str | torch.device = "cpu") -> tuple[Tokenizer, dict[str, Any]]:
    """A trained tokenizer, in eval mode, with its checkpoint record."""
    ckpt = load_checkpoint(path, kind="tokenizer")
    model = Tokenizer(dataclass_from_dict(TokenizerConfig, ckpt["config"]["model"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt


def load_world_model(path: str | Path, device: str | torch.device = "cpu", use_ema: bool = True
                     ) -> tuple[WorldModel, dict[str, Any]]:
    """A trained world model (EMA weights by default), in eval mode, with its checkpoint record."""
    ckpt = load_checkpoint(path, kind="world_model")
    weights = ckpt["ema" if use_ema and "ema" in ckpt else "model"]
    if not any(k.startswith("heads.") for k in weights):
        raise CheckpointError(f"{path} has no reward / episode-end heads, so it cannot drive a dream env. "
                              "Train it with `worldsim train-world-model` (which trains the heads).")
    cfg = saved_world_model_config(ckpt, path)
    try:
        model = WorldModel(cfg)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: its model config does not fit this worldsim ({e})") from e
    if "heads.net.0.weight" in weights:
        raise CheckpointError(f"{path} was trained before the reward / end heads became the sum of a pair view and "
                              "a context view (December 2026, which lets the heads learn from many more transitions "
                              "per step). Retrain it: `worldsim train-world-model ...` with a new out=...")
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit its own config ({str(e)[:300]}): it was written by "
                              "another worldsim version, or the file is damaged.") from e
    model.set_frame_size(*ckpt["config"]["frame_size"])
    return model.to(device).eval(), ckpt
