"""Frames of dreams that lose a life: for held-out Breakout ends, the real 16 steps before each end
(one row) over the dream of the same steps from the same 4 real frames and actions (the row below),
with the dream's end probability per step printed (docs/agents.md "An end the frames show").

    python benchmarks/end_within_frames.py --checkpoint runs/end_within/k10w1_peak/world_model.pt \\
        --data runs/atari100k_wm4k_patch/breakout_seed1/data --out docs/media/breakout_end_within_dream.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from worldsim.data.dataset import WindowDataset
from worldsim.data.store import EpisodeStore
from worldsim.io import atomic_write_with
from worldsim.models.loading import load_world_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True, help="the run's episode store (its held-out split is used)")
    ap.add_argument("--out", required=True, help="PNG: real / dream rows, 2x nearest-neighbour")
    ap.add_argument("--show", type=int, default=4)
    ap.add_argument("--horizon", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    model, _ = load_world_model(args.checkpoint)
    C, h = model.cfg.dit.context_frames, args.horizon
    data = WindowDataset(EpisodeStore.open(args.data), C + h, "val", 0.1)
    ends = data.ended_episode_frames(C + h, args.show, torch.Generator().manual_seed(args.seed))
    if not len(ends):
        raise SystemExit(f"{args.data} holds no held-out episode that ends with {C + h} frames: give a Breakout store.")
    batch = data.gather(data.windows_ending_at(ends, C + h))  # the same windows as rollouts.ends
    with torch.no_grad():
        out = model.rollout(model.encode(batch.frames[:, :C]), model.prev_actions(batch.actions[:, : C - 1]),
                            batch.actions[:, C - 1 :], torch.Generator().manual_seed(args.seed))
        dream = torch.stack([model.decode(out.latents[:, k]) for k in range(h)], 1)  # (n, h, 3, H, W)
    rows = [torch.cat(list(frames), dim=2) for pair in zip(batch.frames[:, C:], dream) for frames in pair]
    image = torch.cat(rows, dim=1).permute(1, 2, 0).numpy()
    big = Image.fromarray(image).resize((image.shape[1] * 2, image.shape[0] * 2), Image.NEAREST)
    atomic_write_with(Path(args.out), lambda tmp: big.save(tmp, format="PNG", optimize=True))
    np.set_printoptions(precision=2, suppress=True)
    print(f"end probability per dream step (rows; the game's end is the last step):\n{out.end_probs.float().numpy()}")


if __name__ == "__main__":
    main()
