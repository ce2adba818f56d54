"""Choose the tokenizer's compression factor from measured figures, not by habit.

Trains one tokenizer per candidate (same data, same step budget) and reports held-out
reconstruction PSNR, motion PSNR (over the pixels that change between consecutive frames, where a
game's moving objects are), latent size, training and decoding speed on this machine.

    python benchmarks/tokenizer_factor.py --data data/boxing --steps 800 --out benchmarks/results/tokenizer_factor_boxing.json
    python benchmarks/tokenizer_factor.py --data data/boxing --steps 3000 --candidates f4_c8,f4_c16,f4_c16_w96,f8_c32 \
        --out benchmarks/results/tokenizer_channels_boxing.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from worldsim.data.store import EpisodeStore
from worldsim.io import atomic_write_json
from worldsim.models.tokenizer import TokenizerConfig
from worldsim.models.loading import load_tokenizer
from worldsim.training.train_tokenizer import TokenizerTrainConfig, train_tokenizer

CANDIDATES = {
    "f4_c4": TokenizerConfig(patch_size=4, channels=[64], latent_channels=4),
    "f4_c8": TokenizerConfig(patch_size=4, channels=[64], latent_channels=8),
    "f8_c16": TokenizerConfig(patch_size=4, channels=[64, 96], latent_channels=16),
    "f8_c8": TokenizerConfig(patch_size=4, channels=[64, 96], latent_channels=8),
    "f4_c16": TokenizerConfig(patch_size=4, channels=[64], latent_channels=16),
    "f4_c16_w96": TokenizerConfig(patch_size=4, channels=[96], latent_channels=16),
    "f8_c32": TokenizerConfig(patch_size=4, channels=[64, 96], latent_channels=32),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--candidates", default=",".join(CANDIDATES))
    ap.add_argument("--work", default="runs/tokenizer_factor")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    env = EpisodeStore.open(args.data).metadata
    results = {"data": args.data, "env": env["env"], "game": env["env_kwargs"].get("game"), "steps": args.steps,
               "batch_size": args.batch_size, "threads": torch.get_num_threads(), "candidates": {}}
    for name in args.candidates.split(","):
        cfg = CANDIDATES[name]
        out = Path(args.work) / f"{Path(args.data).name}_{name}.pt"
        metrics = train_tokenizer(args.data, out, cfg, TokenizerTrainConfig(steps=args.steps, batch_size=args.batch_size,
                                  warmup=50, eval_frames=2048, ckpt_every=10**9, log_every=100), progress=False)
        model, _ = load_tokenizer(out)
        z = torch.randn(64, cfg.latent_channels, 64 // cfg.downsample, 64 // cfg.downsample)
        with torch.no_grad():
            model.decode(z)
            t = time.perf_counter()
            for _ in range(5):
                model.decode(z)
            decode_fps = 64 * 5 / (time.perf_counter() - t)
        results["candidates"][name] = {
            "downsample": cfg.downsample, "latent_channels": cfg.latent_channels,
            "latent_values_per_frame": cfg.latent_channels * (64 // cfg.downsample) ** 2,
            "psnr": metrics["psnr"], "motion_psnr": metrics["motion_psnr"],
            "train_seconds": metrics["train_seconds"], "decode_frames_per_s": decode_fps,
        }
        print(name, json.dumps(results["candidates"][name]))
        atomic_write_json(Path(args.out), results)


if __name__ == "__main__":
    main()
