"""Object survival: does a small sprite (Pong's ball, Breakout's ball, the two boxers) still exist
in a generated frame, as a sprite rather than a smear?

Frames are area-resized from the console's 210×160 to 64×64, so a sprite's pixels are blends
``α·colour + (1-α)·background``. For every pixel of the sprite's region this module reads the
blend fraction α (the projection of ``pixel - background`` on ``colour - background``; pixels
farther than ``COLOUR_TOLERANCE`` from that line, i.e. of some other colour, get α = 0) and counts
the **sprite pixels**, those with α ≥ ``ALPHA`` (0.8 for the solid boxers). A sharp ball gives 1–3 of them at 64×64 (measured
on recorded Pong and Breakout play); a ball blurred over twice its area has none left above the
threshold, and a vanished ball has none.

**Survival at horizon h** = among the windows whose true frame holds the sprite (≥ 1 sprite pixel),
the share whose generated frame holds between half and twice the true count, one pixel of slack
either way (a 1–3 pixel ball's count moves with its sub-pixel position), and at least one. Grain
of the sprite's colour that doubles the count fails it as well. Pooled over windows per horizon.
**Placed at horizon h**: survived, and the centroid of the generated sprite pixels within
``PLACE_TOLERANCE`` pixels of the true one's (a ball is where the game has it, not anywhere: a few
specks of ball-coloured grain elsewhere can pass the count, not the place).

The sprite table lists colours in the ALE's NTSC palette; regions are fractions of the frame
height and width (the ring, the court between the walls, the space between bricks and paddle), so
the score and lives digits of the same colours do not count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ALPHA = 0.4  # share of the sprite's colour in a pixel for it to count as a sprite pixel
COLOUR_TOLERANCE = 25.0  # distance (0-255 RGB units) from the colour-background line
PLACE_TOLERANCE = 3.0  # pixels (64x64) between generated and true centroids; Pong's ball moves 2.1 per step (median)


@dataclass(frozen=True)
class Sprite:
    name: str
    colour: tuple[int, int, int]
    background: tuple[int, int, int]
    rows: tuple[float, float] = (0.0, 1.0)  # fraction of the height: [top, bottom)
    cols: tuple[float, float] = (0.0, 1.0)  # fraction of the width: [left, right)
    alpha: float = ALPHA  # solid sprites (the boxers) use a stricter share, so a soft-edged smear fails


SPRITES: dict[str, tuple[Sprite, ...]] = {
    # court between the two white walls (rows 11..57 of 64)
    "pong": (Sprite("ball", (236, 236, 236), (144, 72, 17), rows=(11 / 64, 58 / 64)),),
    # below the lowest brick row (rows 17-18 of 64), above the paddle (row 58)
    "breakout": (Sprite("ball", (200, 72, 72), (0, 0, 0), rows=(20 / 64, 57 / 64)),),
    # inside the ring, right of the black HUD bar, below the score digits; a boxer has 26-40 pixels
    # at α >= 0.8 in recorded play (white 38, black 27 on average), none in a 9-pixel box blur
    "boxing": (Sprite("white_boxer", (214, 214, 214), (110, 156, 66), (10 / 64, 60 / 64), (4 / 64, 1.0), 0.8),
               Sprite("black_boxer", (0, 0, 0), (110, 156, 66), (10 / 64, 60 / 64), (4 / 64, 1.0), 0.8)),
}


def sprites_for(env_meta: dict) -> tuple[Sprite, ...]:
    """The sprites of the game a checkpoint was trained on (``ckpt["env"]``); () for other envs."""
    if env_meta.get("env") != "atari":
        return ()
    return SPRITES.get(str(env_meta.get("env_kwargs", {}).get("game", "")).lower(), ())


def sprite_mask(frames: torch.Tensor, sprite: Sprite) -> torch.Tensor:
    """Sprite pixels of (b, 3, H, W) uint8 frames -> (b, H, W) bool (False outside the sprite's region)."""
    if frames.dtype != torch.uint8:
        raise ValueError(f"sprite scores need uint8 frames (0-255), got {frames.dtype}: "
                         "convert with worldsim.models.tokenizer.float_to_frames")
    h, w = frames.shape[-2:]
    r0, r1 = round(sprite.rows[0] * h), round(sprite.rows[1] * h)
    c0, c1 = round(sprite.cols[0] * w), round(sprite.cols[1] * w)
    x = frames[:, :, r0:r1, c0:c1].float()  # (b, 3, h', w')
    bg = torch.tensor(sprite.background, dtype=torch.float32, device=x.device)[None, :, None, None]
    d = torch.tensor(sprite.colour, dtype=torch.float32, device=x.device)[None, :, None, None] - bg
    off = x - bg
    alpha = (off * d).sum(1, keepdim=True) / (d * d).sum()  # (b, 1, h', w')
    on_line = (off - alpha * d).norm(dim=1, keepdim=True) < COLOUR_TOLERANCE
    mask = torch.zeros(frames.shape[0], h, w, dtype=torch.bool, device=frames.device)
    mask[:, r0:r1, c0:c1] = ((alpha >= sprite.alpha) & on_line)[:, 0]
    return mask


def sprite_pixels(frames: torch.Tensor, sprite: Sprite) -> torch.Tensor:
    """Number of sprite pixels per frame of (b, 3, H, W) uint8 frames -> (b,)."""
    return sprite_mask(frames, sprite).flatten(1).sum(1)


def _centroids(mask: torch.Tensor) -> torch.Tensor:
    """(b, H, W) bool -> (b, 2) mean (row, col) of the True pixels (NaN where there are none)."""
    rows = torch.arange(mask.shape[1], dtype=torch.float32, device=mask.device)[:, None].expand(mask.shape[1:])
    cols = torch.arange(mask.shape[2], dtype=torch.float32, device=mask.device)[None, :].expand(mask.shape[1:])
    m = mask.float()
    n = m.flatten(1).sum(1)
    return torch.stack([(m * rows).flatten(1).sum(1), (m * cols).flatten(1).sum(1)], 1) / n[:, None]


def survival_sums(pred: torch.Tensor, true: torch.Tensor, sprites: tuple[Sprite, ...]) -> dict[str, torch.Tensor]:
    """Per-item indicators for pooling, per sprite: ``<name>_present`` (the true frame holds it),
    ``<name>_survived`` (present, and the generated frame holds between half and twice as many
    sprite pixels, one pixel of slack either way, at least one) and ``<name>_placed`` (survived,
    centroids within ``PLACE_TOLERANCE`` pixels)."""
    out = {}
    for s in sprites:
        m_true, m_pred = sprite_mask(true, s), sprite_mask(pred, s)
        n_true, n_pred = m_true.flatten(1).sum(1), m_pred.flatten(1).sum(1)
        present = n_true >= 1
        # one pixel of slack on both bounds: a 1-3 pixel ball's count moves with its sub-pixel position
        ok = present & (n_pred >= 1) & (2 * n_pred >= n_true - 2) & (n_pred <= 2 * n_true + 1)
        near = (_centroids(m_pred) - _centroids(m_true)).norm(dim=1) <= PLACE_TOLERANCE  # NaN compares False
        out[f"{s.name}_present"], out[f"{s.name}_survived"] = present.double(), ok.double()
        out[f"{s.name}_placed"] = (ok & near).double()
    return out
