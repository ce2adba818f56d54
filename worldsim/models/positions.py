"""Position and noise-level embeddings of the DiT, as small pure functions.

* :func:`timestep_embedding`: sinusoidal embedding of a scalar (Transformer; DiT's ``t_embedder``).
* :func:`sincos_2d`: 2D sin-cos positions of a patch grid (MAE / DiT), computed for any grid, so one
  model serves any frame size whose latent grid divides by the patch size.
* :func:`rope_tables` / :func:`apply_rope`: rotary embeddings over *time* (RoFormer, Su et al. 2021):
  a query-key product depends only on how far apart two frames are, never on their absolute index,
  which is what lets a key/value cache roll forward without limit (see ``DiTCache.rebase``).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation (DiT, Sec. 3.2): x · (1 + scale) + shift, as one fused kernel."""
    return torch.addcmul(shift, x, 1 + scale)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of a scalar per element (Vaswani et al. 2017, Sec. 3.5). ``t`` (...,) -> (..., dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[..., None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


@lru_cache(maxsize=16)
def sincos_2d(hp: int, wp: int, dim: int) -> torch.Tensor:
    """2D sin-cos positions of an ``hp × wp`` patch grid: (hp·wp, dim), half the channels per axis."""
    ys, xs = torch.meshgrid(torch.arange(hp, dtype=torch.float32), torch.arange(wp, dtype=torch.float32), indexing="ij")
    half = dim // 2
    return torch.cat([timestep_embedding(ys.flatten(), half, 100.0), timestep_embedding(xs.flatten(), half, 100.0)], -1)


def rope_tables(frame_pos: torch.Tensor, head_dim: int, base: float = 10_000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary tables for positions ``frame_pos`` (L,) -> cos, sin (L, head_dim).

    Pair ``j`` of the ``head_dim / 2`` rotation pairs turns by ``pos · base^(-j / (head_dim/2))``
    (RoFormer eq. 15), the two halves of the head dimension forming the pairs.
    """
    half = head_dim // 2
    freqs = 1.0 / base ** (torch.arange(half, device=frame_pos.device, dtype=torch.float32) / half)
    angles = frame_pos.float()[:, None] * freqs  # (L, half)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (b, heads, L, e) rotated by position: x·cos + rotate_half(x)·sin, in x's dtype (under bf16
    autocast, fp32 tables would turn q and k into fp32 copies that attention casts straight back)."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.addcmul(x * cos, torch.cat([-x2, x1], dim=-1), sin)
