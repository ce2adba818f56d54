"""Rollout videos: real play beside the dream under the same recorded actions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from worldsim.data.dataset import WindowDataset
from worldsim.data.store import EpisodeStore
from worldsim.models.tokenizer import channels_last_frames
from worldsim.models.world_model import WorldModel


def _upscale(frames: np.ndarray, k: int) -> np.ndarray:
    return frames.repeat(k, -3).repeat(k, -2)


@torch.no_grad()
def real_vs_dream_video(model: WorldModel, data_dir: str | Path, out: str | Path, rows: int = 4, steps: int = 64,
                        split: str = "val", val_fraction: float = 0.1, seed: int = 0, scale: int = 3,
                        fps: int = 15) -> Path:
    """Write a video: each row one held-out window, real frames on the left, the dream on the right.

    Both start from the same ``C`` real frames; the dream then follows the recorded actions.
    """
    import imageio.v2 as imageio

    C = model.cfg.dit.context_frames
    store = EpisodeStore.open(data_dir)
    data = WindowDataset(store, C + steps, split, val_fraction)
    g = torch.Generator().manual_seed(seed)
    idx = data.starts[torch.randperm(len(data), generator=g)[:rows]][:, None] + torch.arange(C + steps)
    frames = data.frames[idx].permute(0, 1, 4, 2, 3)  # (r, C+T, 3, h, w)
    actions, _, _ = data.transitions(idx)
    latents = model.encode(frames[:, :C])
    cache = model.start(latents, model.prev_actions(actions[:, : C - 1]))
    dream = [frames[:, C - 1]]
    for k in range(steps):
        out_k = model.step(cache, actions[:, C - 1 + k], g)
        dream.append(model.decode(out_k.latents))
    dream_t = torch.stack(dream[1:], 1)  # (r, T, 3, h, w)
    real = channels_last_frames(frames[:, C:]).numpy()
    fake = channels_last_frames(dream_t).numpy()
    gap = np.full((*real.shape[:3], 2, 3), 255, np.uint8)
    side = np.concatenate([real, gap, fake], axis=3)  # (r, T, h, 2w+2, 3)
    video = np.concatenate(list(side), axis=1)  # rows stacked vertically: (T, r·h, 2w+2, 3)
    video = _upscale(video, scale)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    if out.suffix == ".gif":
        imageio.mimsave(tmp, list(video), duration=1000 / fps, loop=0)
    else:
        imageio.mimsave(tmp, list(video), fps=fps, macro_block_size=1)
    tmp.replace(out)
    return out
