"""The reward and episode-end heads of the world model (see :class:`Heads`)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

REWARD_CLASSES = (-1.0, 0.0, 1.0)  # the reward head predicts sign(reward), as DIAMOND does


class Heads(nn.Module):
    """Reward sign (3 classes) and episode end (1 logit) of a transition from latent frame
    ``prev`` to latent frame ``new``, as the sum of the logits of two views of it:

    * the **pair view**, a small conv net over the pair of latent frames (channels stacked), which
      sees *what changed* directly: a score digit flipping is a few latent pixels of one frame, and
      a read-out of the DiT's pooled features misses it (measured on held-out Boxing: balanced reward
      accuracy 0.33, i.e. chance, after 4,000 steps with token features alone; 0.71 with a conv view);
    * the **context view**, an MLP over the mean of the DiT's clean-stream token features of the new
      frame (history and action), zero-initialised so that it starts as a correction.

    The pair view needs no DiT pass, so training also feeds it extra transitions (``head_pairs``):
    the heads learn from far more rewarded transitions per step than the DiT's windows hold.
    """

    def __init__(self, width: int, latent_channels: int, conv_width: int = 64) -> None:
        super().__init__()
        if conv_width < 1:
            raise ValueError(f"heads_conv_width must be >= 1, got {conv_width}.")
        cw = conv_width
        self.pair = nn.Sequential(
            nn.Conv2d(2 * latent_channels, cw, 3, padding=1), nn.SiLU(),
            nn.Conv2d(cw, cw, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(cw, cw, 3, stride=2, padding=1), nn.SiLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),  # any latent grid size
            nn.Linear(cw, cw), nn.SiLU(), nn.Linear(cw, 4))
        self.norm = nn.LayerNorm(width)
        self.context = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, 4))
        nn.init.zeros_(self.context[-1].weight)
        nn.init.zeros_(self.context[-1].bias)

    def pair_logits(self, prev: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """prev, new latents (..., c, h, w) -> the pair view's logits (..., 4)."""
        lead = new.shape[:-3]
        pair = torch.cat([prev, new], dim=-3).reshape(-1, 2 * new.shape[-3], *new.shape[-2:])
        return self.pair(pair).reshape(*lead, 4)

    def forward(self, tokens: torch.Tensor, prev: torch.Tensor, new: torch.Tensor) -> "HeadOutput":
        """tokens (..., n, d), prev and new latents (..., c, h, w) -> logits (..., 3), (...)."""
        context = self.context(self.norm(tokens).mean(dim=-2))
        out = context + self.pair_logits(prev.to(context.dtype), new.to(context.dtype))
        return HeadOutput(out[..., :3], out[..., 3])


class HeadOutput(NamedTuple):
    reward: torch.Tensor  # (..., 3) reward-sign logits, or probabilities where a method says so
    end: torch.Tensor  # (...) episode-end logit, or probability


def reward_to_class(r: torch.Tensor) -> torch.Tensor:
    return (torch.sign(r) + 1).long()
