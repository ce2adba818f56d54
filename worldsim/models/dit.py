"""An action-conditioned, temporally causal Diffusion Transformer over spacetime latent patches.

Tokens are ``patch_size × patch_size`` patches of the tokenizer's latent frames (Sora's "spacetime
patches", ViViT's tubelets of one frame). The model sees two streams of frames:

* the **clean stream**: past latent frames (lightly noised during training, as GameNGen's noise
  augmentation), each conditioned on the action that led to it;
* the **noisy stream**: the frame being generated at noise level σ, conditioned on σ and on the
  action just taken.

Attention is full over the tokens of one frame and causal over frames, within a sliding window of
``context_frames`` past frames (a block-causal mask). Because a clean frame never attends to a
later one, its keys and values never change once computed: generation caches them (``DiTCache``)
and each new frame costs only its own tokens, at every step of a rollout.

Training is teacher forcing on both streams at once: a window of ``t`` frames gives ``t - 1``
denoising targets in a single pass (the noisy copy of frame ``i`` attends to clean frames
``i - C .. i - 1`` and to itself), as an LLM learns every next token of a sequence together.

Conditioning is DiT's adaLN-Zero (Peebles & Xie 2023): per frame, the noise-level embedding plus
the action embedding regress shift/scale/gate of every block, gates initialised to zero so a fresh
block is the identity. Positions: 2D sin-cos over the patch grid, computed for whatever grid
arrives (any frame size divisible by the patch grid), and rotary embeddings over time, so attention
depends on how far back a frame is, never on its absolute index (any context length up to the
window, any rollout length).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


@dataclass
class DiTConfig:
    latent_channels: int = 4
    patch_size: int = 2
    width: int = 256
    depth: int = 6
    heads: int = 4
    mlp_ratio: float = 4.0
    num_actions: int = 18
    context_frames: int = 4  # C: past frames each frame attends to
    action_embed_std: float = 0.02  # init scale of the adaLN action embeddings (DiT's label-embedding default)
    action_token_std: float = 0.02  # init scale of the action embeddings added to the generated frame's tokens
    # Frame stacking inside the token: each patch of the frame being generated also carries the same
    # patch of the last ``stack_frames`` clean frames (channel concatenation, as DIAMOND stacks
    # frames into its U-Net's input). Attention can fetch them too, but a direct, local path makes
    # "copy what stays, move what moves" learnable in minutes instead of hours. 0 disables it.
    stack_frames: int = 0
    # Add the action embedding to the tokens of the frame being generated as well as through adaLN:
    # under adaLN-Zero the action reaches the net only through zero-initialised modulation, so its
    # gradient starts at zero; an additive token embedding learns from the first step.
    action_tokens: bool = False
    # Rotary positions over space as well as time (3D RoPE: the head dimension is split between the
    # frame index and the patch row / column). Attention then sees relative offsets in space, so
    # "look one patch to the left in the previous frame" (motion) is the same rule everywhere.
    spatial_rope: bool = False
    # Kernel of the patch embedding (a strided convolution): ``patch_size`` cuts disjoint patches
    # (ViT); a larger odd-or-even kernel with the same parity as ``patch_size`` gives each token its
    # neighbours' pixels too (overlapping patches, as "Early convolutions help transformers see
    # better", Xiao et al. 2021), so small motions across a patch border are visible to one token.
    embed_kernel: int = 0  # 0: equal to patch_size
    # Mix-FFN (SANA): a depthwise 3×3 convolution over the patch grid inside every block's MLP.
    mix_ffn: bool = False
    # Start the noisy frame's channels of the (stacked) token embedding at zero; see initialize_weights.
    zero_init_noisy: bool = False
    # "window": full attention over the spacetime window (every token sees all n tokens of its C+1
    # frames); "factorized": spatial attention within a frame, then temporal attention over the same
    # patch position in the window (ViViT's factorised encoder, Genie's ST-transformer): (n + C + 1)
    # keys per token instead of (C + 1)·n. Both are causal in time and cache the same way.
    attention: str = "window"


# ----------------------------------------------------------------------------- embeddings
def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation (DiT eq. in Sec. 3.2): x · (1 + scale) + shift."""
    return x * (1 + scale) + shift


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of a scalar per element (Transformer / DiT). ``t`` (...,) -> (..., dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[..., None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


@lru_cache(maxsize=16)
def _sincos_2d(hp: int, wp: int, dim: int) -> torch.Tensor:
    """2D sin-cos positions of an ``hp × wp`` patch grid (MAE / DiT), (hp·wp, dim)."""
    ys, xs = torch.meshgrid(torch.arange(hp, dtype=torch.float32), torch.arange(wp, dtype=torch.float32), indexing="ij")
    half = dim // 2
    return torch.cat([timestep_embedding(ys.flatten(), half, 100.0), timestep_embedding(xs.flatten(), half, 100.0)], -1)


def rope_tables(positions: torch.Tensor, head_dim: int, base: float = 10_000.0, spatial_pairs: int = 0,
                spatial_base: float = 100.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary tables (RoFormer, Su et al. 2021) -> cos, sin ``(L, head_dim)``.

    ``positions`` is ``(L,)`` frame indices, or ``(L, 3)`` (frame, row, column) per token. With
    ``spatial_pairs = s > 0`` the ``head_dim / 2`` rotation pairs are split axially: the first
    ``head_dim/2 - 2s`` rotate with the frame index (frequencies from ``base``), the next ``s`` with
    the row and the last ``s`` with the column (frequencies from ``spatial_base``), so the query-key
    product depends only on the offsets in time and space.
    """
    half = head_dim // 2
    pos = positions.float()
    if pos.dim() == 1:
        pos = torch.stack([pos, torch.zeros_like(pos), torch.zeros_like(pos)], dim=-1)
    tp = half - 2 * spatial_pairs
    if tp <= 0:
        raise ValueError(f"head_dim {head_dim} leaves no rotary pairs for time with {spatial_pairs} per spatial axis.")
    dev = positions.device

    def freqs(count: int, b: float) -> torch.Tensor:
        return 1.0 / b ** (torch.arange(count, device=dev, dtype=torch.float32) / max(count, 1))

    angles = pos[:, :1] * freqs(tp, base)  # (L, tp)
    if spatial_pairs:
        fs = freqs(spatial_pairs, spatial_base)
        angles = torch.cat([angles, pos[:, 1:2] * fs, pos[:, 2:3] * fs], dim=-1)  # (L, half)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (b, heads, L, hd) rotated by position: x·cos + rotate_half(x)·sin."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


# ----------------------------------------------------------------------------- windowed attention
@dataclass
class WindowLayout:
    """Token layout of a teacher-forced pass: ``t`` clean frames then ``t - 1`` noisy frames
    (frames 1..t-1), ``n`` tokens each, attention window ``C`` frames (see :meth:`DiT.block_causal_mask`)."""

    t: int
    n: int
    C: int
    noisy: bool
    clean_mask: torch.Tensor  # (t, 1, (C+1)·n) bool: which window slots hold a real frame
    noisy_mask: torch.Tensor | None  # (t-1, 1, (C+1)·n)

    @classmethod
    def build(cls, t: int, n: int, C: int, noisy: bool, device) -> "WindowLayout":
        f = torch.arange(t, device=device)[:, None]
        slot = torch.arange(C + 1, device=device)[None, :]
        valid = f - C + slot >= 0  # (t, C+1): slot j of frame f holds frame f-C+j
        clean = valid.repeat_interleave(n, dim=1)[:, None, :]
        noisy_mask = None
        if noisy:  # noisy frame f: clean frames f-C..f-1 (slots 0..C-1 of the clean window), then itself
            nv = torch.cat([valid[1:, :C], torch.ones_like(valid[1:, :1])], dim=1)
            noisy_mask = nv.repeat_interleave(n, dim=1)[:, None, :]
        return cls(t, n, C, noisy, clean, noisy_mask)


def windowed_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lay: WindowLayout) -> torch.Tensor:
    """Block-causal sliding-window attention without a full (L × L) mask.

    q, k, v (b, heads, L, e) with L = t·n clean tokens followed by (t-1)·n noisy tokens. Each frame
    attends only to its own window of C+1 frames, gathered with ``unfold``: the cost is
    O(L · (C+1)·n) instead of O(L²). Equal to full attention under ``DiT.block_causal_mask``.
    """
    b, h, _, e = q.shape
    t, n, C = lay.t, lay.n, lay.C
    tn = t * n

    def frames(x: torch.Tensor, count: int) -> torch.Tensor:  # (b, h, count·n, e) -> (b, h, count, n, e)
        return x.reshape(b, h, count, n, e)

    kc, vc = frames(k[:, :, :tn], t), frames(v[:, :, :tn], t)
    pad = (0, 0, 0, 0, C, 0)  # C empty frames in front of frame 0
    # windows of C+1 consecutive clean frames ending at each frame: (b, h, t, C+1, n, e)
    kw = F.pad(kc, pad).unfold(2, C + 1, 1).permute(0, 1, 2, 5, 3, 4)
    vw = F.pad(vc, pad).unfold(2, C + 1, 1).permute(0, 1, 2, 5, 3, 4)
    # SDPA's fused CPU kernels take 4-D inputs only (5-D falls back to the unfused maths, 2× slower
    # here): fold (heads, frames) into one batch dimension, and the per-frame mask with them.
    qc = q[:, :, :tn].reshape(b, h * t, n, e)
    out_c = F.scaled_dot_product_attention(qc, kw.reshape(b, h * t, -1, e), vw.reshape(b, h * t, -1, e),
                                           attn_mask=lay.clean_mask.repeat(h, 1, 1)[None])  # (b, h·t, n, e)
    outs = [out_c.reshape(b, h, tn, e)]
    if lay.noisy:
        qn, kn, vn = (frames(x[:, :, tn:], t - 1) for x in (q, k, v))
        kwn = torch.cat([kw[:, :, 1:, :C], kn[:, :, :, None]], dim=3).reshape(b, h * (t - 1), -1, e)
        vwn = torch.cat([vw[:, :, 1:, :C], vn[:, :, :, None]], dim=3).reshape(b, h * (t - 1), -1, e)
        out_n = F.scaled_dot_product_attention(qn.reshape(b, h * (t - 1), n, e), kwn, vwn,
                                               attn_mask=lay.noisy_mask.repeat(h, 1, 1)[None])
        outs.append(out_n.reshape(b, h, (t - 1) * n, e))
    return torch.cat(outs, dim=2)


def temporal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lay: WindowLayout) -> torch.Tensor:
    """Causal attention over time at each patch position: the factorized counterpart of
    :func:`windowed_attention`.

    q, k, v (b, heads, F, n, e) with F = t clean frames followed by t-1 noisy frames (noisy = False:
    clean frames only). Clean frame f sees clean frames f-C .. f; noisy frame f sees clean frames
    f-C .. f-1 and itself; always at its own patch position. The window is C+1 keys long, so the
    scores are a handful of multiply-adds per token, done with einsum rather than an attention kernel.
    """
    t, C = lay.t, lay.C
    scale = q.shape[-1] ** -0.5
    dev = q.device
    f = torch.arange(t, device=dev)[:, None]
    valid = f - C + torch.arange(C + 1, device=dev)[None, :] >= 0  # (t, C+1): slot j holds frame f-C+j

    def attend(qq, kw, vw, ok):  # qq (b,h,T,n,e); kw, vw (b,h,T,n,e,K); ok (T, K)
        s = torch.einsum("bhtne,bhtnek->bhtnk", qq, kw) * scale
        s = s.masked_fill(~ok[None, None, :, None, :], float("-inf")).softmax(dim=-1).to(vw.dtype)
        return torch.einsum("bhtnk,bhtnek->bhtne", s, vw)

    pad = (0, 0, 0, 0, C, 0)
    kw = F.pad(k[:, :, :t], pad).unfold(2, C + 1, 1)  # (b, h, t, n, e, C+1)
    vw = F.pad(v[:, :, :t], pad).unfold(2, C + 1, 1)
    outs = [attend(q[:, :, :t], kw, vw, valid)]
    if lay.noisy:
        kn = torch.cat([kw[:, :, 1:, ..., :C], k[:, :, t:, ..., None]], dim=-1)  # clean f-C..f-1, then itself
        vn = torch.cat([vw[:, :, 1:, ..., :C], v[:, :, t:, ..., None]], dim=-1)
        ok = torch.cat([valid[1:, :C], torch.ones_like(valid[1:, :1])], dim=1)
        outs.append(attend(q[:, :, t:], kn, vn, ok))
    return torch.cat(outs, dim=2)


class Rope(NamedTuple):
    """Rotary tables for one pass. Window attention: ``cos``/``sin`` per token (F·n, e).
    Factorized: ``cos``/``sin`` per frame (F, e) for the temporal attention, ``space`` = per-token
    (n, e) tables for the spatial attention (None without spatial rotary positions)."""

    cos: torch.Tensor
    sin: torch.Tensor
    space: tuple[torch.Tensor, torch.Tensor] | None = None


# ----------------------------------------------------------------------------- blocks
class Attention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} must be divisible by heads {heads}.")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: "WindowLayout | torch.Tensor | None",
                past: tuple[torch.Tensor, torch.Tensor] | None = None):
        """``layout``: a :class:`WindowLayout` (windowed teacher-forced pass), a boolean mask, or
        None (cached generation: the new tokens attend to ``past`` and to each other)."""
        q, k, v = rearrange(self.qkv(x), "b n (three h e) -> three b h n e", three=3, h=self.heads)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if isinstance(layout, WindowLayout):
            out = windowed_attention(q, k, v, layout)
        else:
            keys, values = k, v
            if past is not None:  # the new frame goes into the cache's scratch slot: no concatenation
                n = k.shape[2]
                past[0][:, :, -n:], past[1][:, :, -n:] = k, v
                keys, values = past
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=layout)  # (b, h, n, e)
        return self.proj(rearrange(out, "b h n e -> b n (h e)")), (k, v)

    def spatial(self, x: torch.Tensor, space: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        """Full attention among the n tokens of each frame: x (b, F, n, d) -> (b, F, n, d)."""
        b = x.shape[0]
        q, k, v = rearrange(self.qkv(x), "b f n (three h e) -> three (b f) h n e", three=3, h=self.heads)
        if space is not None:
            q, k = apply_rope(q, *space), apply_rope(k, *space)
        out = F.scaled_dot_product_attention(q, k, v)  # (b·F, h, n, e)
        return self.proj(rearrange(out, "(b f) h n e -> b f n (h e)", b=b))

    def temporal(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: "WindowLayout | None",
                 past: tuple[torch.Tensor, torch.Tensor] | None = None):
        """Attention over time at each patch position: x (b, F, n, d), rotary tables per frame (F, e).
        ``layout`` for a teacher-forced pass, or None with ``past`` (b, h, (C+1)·n, e): the cache's
        keys/values, whose scratch slot receives this frame's (cached generation of one frame, F = 1)."""
        q, k, v = rearrange(self.qkv(x), "b f n (three h e) -> three b h f n e", three=3, h=self.heads)
        cos, sin = cos[:, None], sin[:, None]  # (F, 1, e): the same angle for every patch of a frame
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if layout is not None:
            out = temporal_attention(q, k, v, layout)  # (b, h, F, n, e)
        else:  # one new frame (in the cache's scratch slot) against the C cached ones
            n = x.shape[2]
            past[0][:, :, -n:], past[1][:, :, -n:] = k[:, :, 0], v[:, :, 0]
            kw = rearrange(past[0], "b h (c n) e -> b h n e c", n=n)[:, :, None]  # (b, h, 1, n, e, C+1)
            vw = rearrange(past[1], "b h (c n) e -> b h n e c", n=n)[:, :, None]
            s = torch.einsum("bhtne,bhtnek->bhtnk", q, kw) * q.shape[-1] ** -0.5
            out = torch.einsum("bhtnk,bhtnek->bhtne", s.softmax(dim=-1).to(vw.dtype), vw)
        kv = (rearrange(k, "b h f n e -> b h (f n) e"), rearrange(v, "b h f n e -> b h (f n) e"))
        return self.proj(rearrange(out, "b h f n e -> b f n (h e)")), kv


class MixFFN(nn.Module):
    """The MLP with a depthwise 3×3 convolution over each frame's patch grid between its two linear
    layers (SANA's Mix-FFN, Xie et al. 2024; PVTv2). Attention mixes tokens globally; this gives
    every block a local, translation-equivariant path, the inductive bias that lets a small model
    learn "this sprite moved one patch" in minutes. It mixes tokens within a frame only, so causality
    over frames and the key/value cache are unchanged."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.dw = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        # x (b, F, n, d) with n = hp·wp tokens per frame
        b, f = x.shape[:2]
        h = rearrange(self.fc1(x), "b f (hh ww) e -> (b f) e hh ww", hh=hw[0])
        h = F.gelu(self.dw(h), approximate="tanh")
        return self.fc2(rearrange(h, "(b f) e hh ww -> b f (hh ww) e", b=b))


class DiTBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float, mix_ffn: bool = False, factorized: bool = False) -> None:
        super().__init__()
        self.factorized = factorized
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(width, heads)  # window attention, or the spatial one when factorized
        if factorized:
            self.norm_t = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
            self.tattn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        hidden = int(width * mlp_ratio)
        self.mix_ffn = mix_ffn
        self.mlp = (MixFFN(width, hidden) if mix_ffn else
                    nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width)))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, (9 if factorized else 6) * width))

    def forward(self, x, cond, hw, rope: Rope, layout, past=None):
        # x (b, F·n, d) tokens of F frames of hw = (hp, wp) patches; cond (b, F, d) one conditioning
        # vector per frame, broadcast over the frame's n tokens (no (b, F·n, 6d) copy)
        f, n = cond.shape[1], hw[0] * hw[1]
        mods = self.ada(cond)[:, :, None].chunk(9 if self.factorized else 6, dim=-1)  # each (b, F, 1, d)
        x = x.unflatten(1, (f, n))  # (b, F, n, d)
        if self.factorized:
            sh1, sc1, g1, sht, sct, gt, sh2, sc2, g2 = mods
            x = x + g1 * self.attn.spatial(modulate(self.norm1(x), sh1, sc1), rope.space)
            h, kv = self.tattn.temporal(modulate(self.norm_t(x), sht, sct), rope.cos, rope.sin, layout, past)
            x = x + gt * h
        else:
            sh1, sc1, g1, sh2, sc2, g2 = mods
            h, kv = self.attn(modulate(self.norm1(x), sh1, sc1).flatten(1, 2), rope.cos, rope.sin, layout, past)
            x = x + g1 * h.unflatten(1, (f, n))
        h = modulate(self.norm2(x), sh2, sc2)
        x = x + g2 * (self.mlp(h, hw) if self.mix_ffn else self.mlp(h))
        return x.flatten(1, 2), kv


class FinalLayer(nn.Module):
    def __init__(self, width: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(width, out_dim)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))

    def forward(self, x, cond, n):
        shift, scale = self.ada(cond)[:, :, None].chunk(2, dim=-1)  # (b, F, 1, d)
        return self.linear(modulate(self.norm(x).unflatten(1, (cond.shape[1], n)), shift, scale).flatten(1, 2))


# ----------------------------------------------------------------------------- cache
class DiTCache:
    """Keys/values of the last ``C`` clean frames, per layer: a ring of frame slots, plus one
    scratch slot at the end where the frame being generated puts its own keys/values, so that a
    generation pass attends to one preallocated buffer instead of concatenating the cache anew.

    Rotary positions are applied before keys are stored, so slot order does not matter to
    attention; frame ``p`` lives in slot ``p % C``.
    """

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], tokens_per_frame: int, next_pos: int):
        self.keys, self.values = keys, values  # per layer (b, heads, (C+1)·n, e): C ring slots, then scratch
        self.n = tokens_per_frame
        self.next_pos = next_pos  # position of the next frame to be generated
        self.last_latents: torch.Tensor | None = None  # (b, c, h, w) newest clean frame, kept by WorldModel
        self.recent: torch.Tensor | None = None  # (b, k, c, h, w) the last k clean inputs, for frame stacking

    @property
    def context_frames(self) -> int:
        return self.keys[0].shape[2] // self.n - 1

    def rebase(self, shift: int, head_dim: int, spatial_pairs: int = 0) -> None:
        """Move every position back by ``shift`` (a multiple of C, so ring slots stay put) by
        rotating the cached keys by −shift. Attention only sees position differences, so nothing
        changes but the size of the angles: long rollouts keep float32 rotary angles small."""
        C = self.context_frames
        if shift % C:
            raise ValueError(f"shift must be a multiple of the context length {C}, got {shift}.")
        cos, sin = rope_tables(torch.tensor([[-shift, 0, 0]], device=self.keys[0].device), head_dim,
                               spatial_pairs=spatial_pairs)
        for i, k in enumerate(self.keys):
            self.keys[i] = apply_rope(k, cos, sin)
        self.next_pos -= shift

    def write(self, layer: int, kv: tuple[torch.Tensor, torch.Tensor], pos: int, rows: torch.Tensor | None = None):
        s = (pos % self.context_frames) * self.n
        if rows is None:
            self.keys[layer][:, :, s : s + self.n] = kv[0]
            self.values[layer][:, :, s : s + self.n] = kv[1]
        else:
            self.keys[layer][rows, :, s : s + self.n] = kv[0]
            self.values[layer][rows, :, s : s + self.n] = kv[1]


# ----------------------------------------------------------------------------- model
class DiT(nn.Module):
    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, p, c = cfg.width, cfg.patch_size, cfg.latent_channels
        k = cfg.embed_kernel or p
        if k < p or (k - p) % 2:
            raise ValueError(f"embed_kernel={k} must be >= patch_size={p} and differ from it by an even number "
                             f"(e.g. {p} or {p + 2}), so patches stay centred on the token grid.")
        self.patch_embed = nn.Conv2d(c, d, k, stride=p, padding=(k - p) // 2)
        if cfg.stack_frames < 0 or cfg.stack_frames > cfg.context_frames:
            raise ValueError(f"stack_frames={cfg.stack_frames} must be between 0 and context_frames={cfg.context_frames}.")
        # tokens of the frame being generated: its noisy patch plus the stacked clean patches
        self.noisy_embed = (nn.Conv2d(c * (1 + cfg.stack_frames), d, k, stride=p, padding=(k - p) // 2)
                            if cfg.stack_frames else None)
        self.head_dim = d // cfg.heads
        self.spatial_pairs = self.head_dim // 6 if cfg.spatial_rope else 0  # a third of the pairs per spatial axis
        # cached keys carry time rotations only when attention is factorized (space is attended per frame)
        self.cache_spatial_pairs = 0 if cfg.attention == "factorized" else self.spatial_pairs
        self.token_action = nn.Embedding(cfg.num_actions + 1, d) if cfg.action_tokens else None
        self.noise_embed = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.action_embed = nn.Embedding(cfg.num_actions + 1, d)  # last index: "no action" (first frame)
        if cfg.attention not in ("window", "factorized"):
            raise ValueError(f"dit.attention must be 'window' or 'factorized', got {cfg.attention!r}.")
        self.factorized = cfg.attention == "factorized"
        self.blocks = nn.ModuleList(DiTBlock(d, cfg.heads, cfg.mlp_ratio, cfg.mix_ffn, self.factorized)
                                    for _ in range(cfg.depth))
        self.final = FinalLayer(d, c * p * p)
        self.initialize_weights()

    @property
    def null_action(self) -> int:
        return self.cfg.num_actions

    def initialize_weights(self) -> None:
        """DiT's initialisation: Xavier linears, adaLN-Zero (gates and output at zero)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for conv in (self.patch_embed, self.noisy_embed):  # patch embeddings as linear layers (DiT)
            if conv is not None:
                nn.init.xavier_uniform_(conv.weight.view(conv.weight.shape[0], -1))
                nn.init.zeros_(conv.bias)
        if self.noisy_embed is not None and self.cfg.zero_init_noisy:
            # The noisy frame's own channels start at zero (ControlNet's "zero convolution" idea): at
            # the high noise levels where few-step sampling predicts, c_in·x is unit-variance noise
            # that would otherwise swamp the stacked clean frames in every token; the model first
            # learns to predict from the context and lets the noisy input in as far as it helps.
            c = self.cfg.latent_channels
            nn.init.zeros_(self.noisy_embed.weight[:, -c:])
        nn.init.normal_(self.action_embed.weight, std=self.cfg.action_embed_std)
        if self.token_action is not None:
            nn.init.normal_(self.token_action.weight, std=self.cfg.action_token_std)
        for layer in (self.noise_embed[0], self.noise_embed[2]):
            nn.init.normal_(layer.weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.ada[-1].weight)
            nn.init.zeros_(block.ada[-1].bias)
        nn.init.zeros_(self.final.ada[-1].weight)
        nn.init.zeros_(self.final.ada[-1].bias)
        nn.init.zeros_(self.final.linear.weight)
        nn.init.zeros_(self.final.linear.bias)

    # ------------------------------------------------------------------ pieces
    def grid(self, h: int, w: int) -> tuple[int, int]:
        p = self.cfg.patch_size
        if h % p or w % p:
            raise ValueError(
                f"A latent grid of {h}×{w} does not fit patch_size {p}: latent height and width must be "
                f"divisible by it. With this tokenizer choose a frame size that is a multiple of "
                f"{p} × the tokenizer's downsampling, or set model.dit.patch_size to a divisor."
            )
        return h // p, w // p

    def embed_frames(self, z: torch.Tensor) -> torch.Tensor:
        """(b, t, c, h, w) latents -> (b, t·n, d) tokens with spatial positions."""
        hp, wp = self.grid(*z.shape[-2:])
        x = self.patch_embed(rearrange(z, "b t c h w -> (b t) c h w"))  # (b·t, d, hp, wp)
        x = rearrange(x, "(b t) d h w -> b t (h w) d", b=z.shape[0]) + _sincos_2d(hp, wp, self.cfg.width).to(x)
        return rearrange(x, "b t n d -> b (t n) d")

    def embed_noisy(self, noisy: torch.Tensor, stacked: torch.Tensor | None, actions: torch.Tensor) -> torch.Tensor:
        """Tokens of frames being generated: noisy (b, t, c, h, w), ``stacked`` (b, t, k, c, h, w) the
        last k clean frames before each (oldest first), ``actions`` (b, t) -> (b, t·n, d)."""
        if self.noisy_embed is None:
            x = self.embed_frames(noisy)
        else:
            hp, wp = self.grid(*noisy.shape[-2:])
            frames = torch.cat([stacked, noisy[:, :, None]], dim=2)  # (b, t, k+1, c, h, w)
            x = self.noisy_embed(rearrange(frames, "b t k c h w -> (b t) (k c) h w"))  # (b·t, d, hp, wp)
            x = rearrange(x, "(b t) d h w -> b t (h w) d", b=noisy.shape[0]) + _sincos_2d(hp, wp, self.cfg.width).to(x)
            x = rearrange(x, "b t n d -> b (t n) d")
        if self.token_action is not None:
            n = x.shape[1] // noisy.shape[1]
            x = x + self.token_action(actions).repeat_interleave(n, dim=1)
        return x

    def stack(self, clean: torch.Tensor) -> torch.Tensor:
        """For frames 1..t-1 of a window, the ``k`` clean frames before each: clean (b, t, c, h, w) ->
        (b, t-1, k, c, h, w), zeros before the window's first frame."""
        k = self.cfg.stack_frames
        padded = torch.cat([clean.new_zeros((clean.shape[0], k - 1, *clean.shape[2:])), clean[:, :-1]], dim=1)
        return torch.stack([padded[:, j : j + clean.shape[1] - 1] for j in range(k)], dim=2)

    def unembed(self, x: torch.Tensor, t: int, h: int, w: int) -> torch.Tensor:
        p = self.cfg.patch_size
        # contiguous: convolutions pick their algorithm (and so their rounding) by memory layout, and a
        # dream must give the same floats for the same seed whatever layout a step left behind
        return rearrange(x, "b (t hh ww) (c p q) -> b t c (hh p) (ww q)", t=t, hh=h // p, ww=w // p, p=p, q=p).contiguous()

    def condition(self, c_noise: torch.Tensor, prev_actions: torch.Tensor) -> torch.Tensor:
        """Per-frame conditioning vectors: noise level + action that led to the frame. (b, F) -> (b, F, d)."""
        return self.noise_embed(timestep_embedding(c_noise * 1000.0, 256)) + self.action_embed(prev_actions)

    def _rope(self, frame_pos: torch.Tensor, hp: int, wp: int) -> Rope:
        """Rotary tables for frames at ``frame_pos`` (F,), each an hp × wp patch grid."""
        n = hp * wp
        dev = frame_pos.device
        ys, xs = torch.meshgrid(torch.arange(hp, device=dev), torch.arange(wp, device=dev), indexing="ij")
        yx = torch.stack([ys.flatten(), xs.flatten()], dim=-1)  # (n, 2)
        if self.factorized:
            space = None
            if self.spatial_pairs:  # frame index 0: the time pairs do not rotate within a frame
                space = rope_tables(torch.cat([torch.zeros_like(yx[:, :1]), yx], dim=-1), self.head_dim,
                                    spatial_pairs=self.spatial_pairs)
            return Rope(*rope_tables(frame_pos, self.head_dim), space)
        t = frame_pos.repeat_interleave(n)
        if not self.spatial_pairs:
            return Rope(*rope_tables(t, self.head_dim))
        pos = torch.cat([t[:, None], yx.repeat(len(frame_pos), 1)], dim=-1)  # (F·n, 3)
        return Rope(*rope_tables(pos, self.head_dim, spatial_pairs=self.spatial_pairs))

    @staticmethod
    def block_causal_mask(q_frames: torch.Tensor, q_noisy: torch.Tensor, k_frames: torch.Tensor,
                          k_noisy: torch.Tensor, window: int) -> torch.Tensor:
        """Which query token may attend to which key token (True = attend); all args per token.

        The definition of the attention pattern; the model computes it window by window
        (:func:`windowed_attention`) and the tests check the two agree.

        clean query at frame f: clean keys of frames f-C .. f (itself included);
        noisy query at frame f: clean keys of frames f-C .. f-1, and the noisy tokens of frame f.
        """
        fq, fk = q_frames[:, None], k_frames[None, :]
        nq, nk = q_noisy[:, None], k_noisy[None, :]
        clean_ok = ~nk & (fk >= fq - window) & ((~nq & (fk <= fq)) | (nq & (fk < fq)))
        return clean_ok | (nq & nk & (fk == fq))

    # ------------------------------------------------------------------ training pass
    def forward(self, clean: torch.Tensor, clean_c_noise: torch.Tensor, noisy: torch.Tensor,
                noisy_c_noise: torch.Tensor, prev_actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced pass over a window.

        clean (b, t, c, h, w) and clean_c_noise (b, t): the (noise-augmented, c_in-scaled) clean frames;
        noisy (b, t-1, c, h, w) and noisy_c_noise (b, t-1): noisy copies of frames 1..t-1;
        prev_actions (b, t): the action that led to each frame (``null_action`` for frame 0).
        Returns the raw output F for the noisy frames (b, t-1, c, h, w) and the clean stream's token
        features (b, t, n, d) for the reward / episode-end heads.
        """
        b, t, c, h, w = clean.shape
        hp, wp = self.grid(h, w)
        n = hp * wp
        dev = clean.device
        stacked = self.stack(clean) if self.cfg.stack_frames else None
        x = torch.cat([self.embed_frames(clean), self.embed_noisy(noisy, stacked, prev_actions[:, 1:])], dim=1)  # (b, (2t-1)·n, d)
        cond = torch.cat([self.condition(clean_c_noise, prev_actions),
                          self.condition(noisy_c_noise, prev_actions[:, 1:])], dim=1)  # (b, 2t-1, d)
        frame_pos = torch.cat([torch.arange(t, device=dev), torch.arange(1, t, device=dev)])
        layout = WindowLayout.build(t, n, self.cfg.context_frames, True, dev)
        rope = self._rope(frame_pos, hp, wp)
        for block in self.blocks:
            x, _ = block(x, cond, (hp, wp), rope, layout)
        features = rearrange(x[:, : t * n], "b (t n) d -> b t n d", t=t)
        out = self.final(x[:, t * n :], cond[:, t:], n)
        return self.unembed(out, t - 1, h, w), features

    # ------------------------------------------------------------------ cached generation
    @torch.no_grad()
    def prefill(self, clean: torch.Tensor, c_noise: torch.Tensor, prev_actions: torch.Tensor, start_pos: int = 0,
                cache: DiTCache | None = None, rows: torch.Tensor | None = None) -> tuple[DiTCache, torch.Tensor]:
        """Encode ``C`` context frames (b, C, c, h, w) into a new cache (or into ``rows`` of ``cache``).

        Frames get positions ``start_pos .. start_pos + C - 1``. Returns the cache and the token
        features (b, C, n, d).
        """
        b, t, c, h, w = clean.shape
        C = self.cfg.context_frames
        if t != C:
            raise ValueError(f"the context must hold exactly {C} frames (the model's context_frames), got {t}.")
        hp, wp = self.grid(h, w)
        n = hp * wp
        dev = clean.device
        x = self.embed_frames(clean)
        cond = self.condition(c_noise, prev_actions)
        frame_pos = torch.arange(start_pos, start_pos + t, device=dev)
        layout = WindowLayout.build(t, n, C, False, dev)
        rope = self._rope(frame_pos, hp, wp)
        if cache is None:
            shape = (b, self.cfg.heads, (C + 1) * n, self.cfg.width // self.cfg.heads)  # C ring slots + scratch
            cache = DiTCache([x.new_zeros(shape) for _ in self.blocks], [x.new_zeros(shape) for _ in self.blocks],
                             n, start_pos + t)
        stack = self.cfg.stack_frames
        if stack:
            if cache.recent is None:
                cache.recent = clean.new_zeros((cache.keys[0].shape[0], stack, c, h, w))
            if rows is None:
                cache.recent = clean[:, t - stack :].clone()
            else:
                cache.recent[rows] = clean[:, t - stack :]
        for i, block in enumerate(self.blocks):
            x, (k, v) = block(x, cond, (hp, wp), rope, layout)
            for f in range(t):
                sl = slice(f * n, (f + 1) * n)
                cache.write(i, (k[:, :, sl], v[:, :, sl]), start_pos + f, rows)
        return cache, rearrange(x, "b (t n) d -> b t n d", t=t)

    def _cached_pass(self, z: torch.Tensor, c_noise: torch.Tensor, action: torch.Tensor, cache: DiTCache,
                     pos: int, commit: bool):
        b, c, h, w = z.shape
        hp, wp = self.grid(h, w)
        n = hp * wp
        if commit:
            x = self.embed_frames(z[:, None])  # (b, n, d)
        else:
            x = self.embed_noisy(z[:, None], cache.recent[:, None] if self.cfg.stack_frames else None, action[:, None])
        cond = self.condition(c_noise[:, None], action[:, None])  # (b, 1, d)
        rope = self._rope(torch.tensor([pos], device=z.device), hp, wp)
        for i, block in enumerate(self.blocks):
            x, kv = block(x, cond, (hp, wp), rope, None, (cache.keys[i], cache.values[i]))
            if commit:
                cache.write(i, kv, pos)
        return x, cond, n, h, w

    @torch.no_grad()
    def denoise_next(self, noisy: torch.Tensor, c_noise: torch.Tensor, action: torch.Tensor, cache: DiTCache) -> torch.Tensor:
        """Raw output F for the next frame (b, c, h, w) at noise ``c_noise`` (b,), given the cache."""
        x, cond, n, h, w = self._cached_pass(noisy, c_noise, action, cache, cache.next_pos, commit=False)
        return self.unembed(self.final(x, cond, n), 1, h, w)[:, 0]

    @torch.no_grad()
    def commit(self, clean: torch.Tensor, c_noise: torch.Tensor, action: torch.Tensor, cache: DiTCache) -> torch.Tensor:
        """Append a generated clean frame (b, c, h, w) to the cache; returns its token features (b, n, d)."""
        x, *_ = self._cached_pass(clean, c_noise, action, cache, cache.next_pos, commit=True)
        if self.cfg.stack_frames:
            cache.recent = torch.cat([cache.recent[:, 1:], clean[:, None]], dim=1)
        cache.next_pos += 1
        if cache.next_pos >= self.REBASE_AT:
            C = self.cfg.context_frames
            cache.rebase((cache.next_pos - C) // C * C, self.head_dim, self.cache_spatial_pairs)
        return x

    REBASE_AT = 4096  # frame position beyond which the cache's rotary angles are moved back
