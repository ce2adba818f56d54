"""Rollout videos: real play | the dream under the same actions | their per-pixel error.

Each row of the video is one held-out window: ``C`` real frames start the dream, which then follows
the recorded actions. Every frame carries its index, the action taken and the reward, true and
predicted by the model's head; the dream panel's border turns red from the first generated frame
whose PSNR against the real one falls below ``psnr_threshold`` (the horizon where the dream "loses"
the game), and stays red. Written as MP4 or GIF (by the suffix), atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from worldsim.data.dataset import WindowDataset
from worldsim.data.store import EpisodeStore
from worldsim.io import atomic_write_with
from worldsim.metrics import psnr_from_mse
from worldsim.models.tokenizer import channels_last_frames
from worldsim.models.heads import REWARD_CLASSES
from worldsim.models.world_model import WorldModel

HEADER = 22  # pixels of text above each row of panels
BORDER = 2


class RolloutFrames(NamedTuple):
    video: np.ndarray  # (T, H, W, 3) uint8, ready to encode
    psnr: np.ndarray  # (rows, T) PSNR of every dream frame against the real one
    first_below: list[int | None]  # per row: first horizon (1-based) whose PSNR < threshold
    captions: list[list[list[str]]]  # [t][row]: the header lines written above each row of frame t


def error_heatmap(real: np.ndarray, dream: np.ndarray) -> np.ndarray:
    """(…, h, w, 3) uint8 pair -> (…, h, w, 3) uint8: mean absolute error mapped black → red → yellow."""
    err = np.abs(real.astype(np.float32) - dream.astype(np.float32)).mean(-1) / 255.0  # (…, h, w) in [0, 1]
    e = np.clip(err * 3.0, 0.0, 1.0)  # errors of a third of the range already saturate
    return (np.stack([np.clip(2 * e, 0, 1), np.clip(2 * e - 1, 0, 1), np.zeros_like(e)], -1) * 255).astype(np.uint8)


def _label(panel: np.ndarray, lines: list[str], color=(255, 255, 255)) -> np.ndarray:
    from PIL import Image, ImageDraw

    img = Image.fromarray(panel)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((3, 1 + 10 * i), line, fill=color)
    return np.asarray(img)


def _panel(frame: np.ndarray, scale: int, border: tuple[int, int, int] | None) -> np.ndarray:
    big = frame.repeat(scale, 0).repeat(scale, 1)
    out = np.zeros((big.shape[0] + 2 * BORDER, big.shape[1] + 2 * BORDER, 3), np.uint8)
    out[:] = border if border is not None else (24, 24, 24)
    out[BORDER:-BORDER, BORDER:-BORDER] = big
    return out


@torch.no_grad()
def _dream_windows(model: WorldModel, store: EpisodeStore, rows: int, steps: int, split: str, val_fraction: float,
                   seed: int, sampling_steps: int | None):
    """``rows`` seeded held-out windows dreamed ``steps`` frames under their recorded actions (one rollout
    routine: :meth:`WorldModel.rollout`, as the evaluation): the batch, the rollout, and the real and
    dreamed frames (r, T, h, w, 3) uint8."""
    C = model.cfg.dit.context_frames
    data = WindowDataset(store, C + steps, split, val_fraction)
    g = torch.Generator().manual_seed(seed)
    batch = data.gather(data.distinct_windows(rows, g))  # frames (r, C+T, 3, h, w)
    out = model.rollout(model.encode(batch.frames[:, :C]), model.prev_actions(batch.actions[:, : C - 1]),
                        batch.actions[:, C - 1 :], g, sampling_steps)
    real = channels_last_frames(batch.frames[:, C:]).numpy()
    dream = channels_last_frames(model.decode(out.latents)).numpy()
    return batch, out, real, dream


@torch.no_grad()
def render_rollouts(model: WorldModel, data_dir: str | Path, rows: int = 4, steps: int = 64, split: str = "val",
                    val_fraction: float = 0.1, seed: int = 0, scale: int = 3, psnr_threshold: float = 20.0,
                    sampling_steps: int | None = None) -> RolloutFrames:
    """The video frames of ``rows`` held-out windows dreamed for ``steps`` frames (one rollout routine:
    :meth:`WorldModel.rollout`, as the evaluation)."""
    store = EpisodeStore.open(data_dir)
    meanings = list(store.metadata.get("action_meanings", []))
    batch, out, real, dream = _dream_windows(model, store, rows, steps, split, val_fraction, seed, sampling_steps)
    C = model.cfg.dit.context_frames
    actions = batch.actions[:, C - 1 :]  # (r, T): the action before each generated frame
    mse = ((real.astype(np.float64) - dream) / 255.0) ** 2
    psnr = np.vectorize(psnr_from_mse)(mse.reshape(*mse.shape[:2], -1).mean(-1))  # (r, T)
    below = psnr < psnr_threshold
    first_below = [int(np.argmax(b)) + 1 if b.any() else None for b in below]
    heat = error_heatmap(real, dream)
    pred_reward = np.asarray(REWARD_CLASSES)[out.reward_probs.argmax(-1).numpy()]  # (r, T)
    true_reward = batch.rewards[:, C - 1 :].numpy()
    video, captions = [], []
    for t in range(steps):
        row_imgs, row_text = [], []
        for r in range(rows):
            lost = first_below[r] is not None and t + 1 >= first_below[r]
            panels = [_panel(real[r, t], scale, None), _panel(dream[r, t], scale, (200, 40, 40) if lost else (40, 160, 60)),
                      _panel(heat[r, t], scale, None)]
            strip = np.concatenate(panels, axis=1)
            a = int(actions[r, t])
            name = meanings[a] if a < len(meanings) else str(a)
            header = np.zeros((HEADER, strip.shape[1], 3), np.uint8)
            text = [f"h={t + 1}  action {name}  reward true {true_reward[r, t]:+.0f} / dream {pred_reward[r, t]:+.0f}",
                    f"real | dream ({psnr[r, t]:.1f} dB{'; < %.0f dB from h=%d' % (psnr_threshold, first_below[r]) if lost else ''}) | error"]
            row_imgs.append(np.concatenate([_label(header, text), strip], axis=0))
            row_text.append(text)
        video.append(np.concatenate(row_imgs, axis=0))
        captions.append(row_text)
    return RolloutFrames(np.stack(video), psnr, first_below, captions)


def write_video(frames: np.ndarray, out_file: str | Path, fps: int = 15) -> Path:
    """(T, H, W, 3) uint8 -> MP4 (H.264 via imageio-ffmpeg) or GIF, by the file suffix; atomic."""
    import imageio.v2 as imageio

    if Path(out_file).suffix.lower() == ".gif":
        return atomic_write_with(out_file, lambda tmp: imageio.mimsave(tmp, list(frames), duration=1000 / fps, loop=0))
    even = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]  # H.264 wants even sizes
    return atomic_write_with(out_file, lambda tmp: imageio.mimsave(tmp, list(even), fps=fps, macro_block_size=1))


@torch.no_grad()
def horizon_strip(model: WorldModel, data_dir: str | Path, horizons: tuple[int, ...] = (1, 4, 16, 64), rows: int = 3,
                  split: str = "all", val_fraction: float = 0.1, seed: int = 0, scale: int = 2,
                  sampling_steps: int | None = None) -> np.ndarray:
    """One still image (H, W, 3) uint8: per held-out window a row of real | dream pairs at the given
    horizons, the docs' visual proof of what a rollout keeps (same rollout routine as the video)."""
    _, _, real, dream = _dream_windows(model, EpisodeStore.open(data_dir), rows, max(horizons), split, val_fraction,
                                       seed, sampling_steps)
    gap = np.zeros((real.shape[2] * scale + 2 * BORDER, 6, 3), np.uint8)
    lines = []
    for r in range(len(real)):
        cells = []
        for h in horizons:
            pair = np.concatenate([_panel(real[r, h - 1], scale, None), _panel(dream[r, h - 1], scale, (40, 160, 60))], 1)
            cells += [pair, gap]
        lines.append(np.concatenate(cells[:-1], axis=1))
    body = np.concatenate(lines, axis=0)
    header = np.zeros((HEADER, body.shape[1], 3), np.uint8)
    width = 2 * (real.shape[3] * scale + 2 * BORDER) + gap.shape[1]
    labels = [(f"h={h}: real | dream", i * width) for i, h in enumerate(horizons)]
    from PIL import Image, ImageDraw

    img = Image.fromarray(header)
    for text, x in labels:
        ImageDraw.Draw(img).text((x + 3, 5), text, fill=(255, 255, 255))
    return np.concatenate([np.asarray(img), body], axis=0)
