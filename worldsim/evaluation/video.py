"""Rollout videos: real play beside the dream under the same recorded actions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from worldsim.data.dataset import WindowDataset
from worldsim.data.store import EpisodeStore
from worldsim.io import atomic_write_with
from worldsim.models.tokenizer import channels_last_frames
from worldsim.models.world_model import WorldModel


def _upscale(frames: np.ndarray, k: int) -> np.ndarray:
    return frames.repeat(k, -3).repeat(k, -2)


@torch.no_grad()
def real_vs_dream_video(model: WorldModel, data_dir: str | Path, out_file: str | Path, rows: int = 4, steps: int = 64,
                        split: str = "val", val_fraction: float = 0.1, seed: int = 0, scale: int = 3,
                        fps: int = 15) -> Path:
    """Write a video: each row one held-out window, real frames on the left, the dream on the right.

    Both start from the same ``C`` real frames; the dream then follows the recorded actions.
    """
    import imageio.v2 as imageio

    C = model.cfg.dit.context_frames
    data = WindowDataset(EpisodeStore.open(data_dir), C + steps, split, val_fraction)
    g = torch.Generator().manual_seed(seed)
    batch = data.gather(data.distinct_windows(rows, g))  # frames (r, C+T, 3, h, w)
    latents = model.encode(batch.frames[:, :C])
    out = model.rollout(latents, model.prev_actions(batch.actions[:, : C - 1]), batch.actions[:, C - 1 :], g)
    real = channels_last_frames(batch.frames[:, C:]).numpy()  # (r, T, h, w, 3)
    fake = channels_last_frames(model.decode(out.latents)).numpy()
    gap = np.full((*real.shape[:3], 2, 3), 255, np.uint8)
    side = np.concatenate([real, gap, fake], axis=3)  # (r, T, h, 2w+2, 3)
    video = _upscale(np.concatenate(list(side), axis=1), scale)  # rows stacked vertically: (T, r·h, 2w+2, 3)
    if Path(out_file).suffix == ".gif":
        writer = lambda tmp: imageio.mimsave(tmp, list(video), duration=1000 / fps, loop=0)  # noqa: E731
    else:
        writer = lambda tmp: imageio.mimsave(tmp, list(video), fps=fps, macro_block_size=1)  # noqa: E731
    return atomic_write_with(out_file, writer)
