"""Block-causal attention over a sliding window of frames, and the key/value cache of generation.

A clean frame attends to itself and to the ``C`` clean frames before it; the noisy copy of a frame
attends to those ``C`` earlier clean frames and to itself (:func:`block_causal_mask` is the
definition; :func:`windowed_attention` computes the same thing window by window). Because a clean
frame never attends to a later one, its keys and values never change once computed: generation
keeps them in a :class:`DiTCache` and each new frame costs only its own tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from worldsim.models.positions import apply_rope, rope_tables


def block_causal_mask(q_frames: torch.Tensor, q_noisy: torch.Tensor, k_frames: torch.Tensor,
                      k_noisy: torch.Tensor, window: int) -> torch.Tensor:
    """Which query token may attend to which key token (True = attend); all arguments per token.

    clean query at frame f: clean keys of frames f-C .. f (itself included);
    noisy query at frame f: clean keys of frames f-C .. f-1, and the noisy tokens of frame f.
    """
    fq, fk = q_frames[:, None], k_frames[None, :]
    nq, nk = q_noisy[:, None], k_noisy[None, :]
    clean_ok = ~nk & (fk >= fq - window) & ((~nq & (fk <= fq)) | (nq & (fk < fq)))
    return clean_ok | (nq & nk & (fk == fq))


@dataclass
class WindowLayout:
    """Token layout of a pass: ``t`` clean frames, then (``noisy``) the ``t - 1`` noisy copies of
    frames 1..t-1, ``n`` tokens each, attention window ``C`` frames."""

    t: int
    n: int
    C: int
    noisy: bool
    clean_mask: torch.Tensor  # (t, 1, (C+1)·n) bool: which window slots hold a real frame
    noisy_mask: torch.Tensor | None  # (t-1, 1, (C+1)·n)

    @classmethod
    def build(cls, t: int, n: int, C: int, noisy: bool, device: torch.device) -> "WindowLayout":
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
    O(L · (C+1)·n) instead of O(L²). Equal to full attention under :func:`block_causal_mask`.
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


class Attention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} must be divisible by heads {heads}.")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: WindowLayout | None,
                past: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x (b, L, d) -> (b, L, d) and this pass's rotated keys / values (b, heads, L, e).

        ``layout``: a windowed pass over whole frames; or None for cached generation, where the new
        frame's tokens go into the scratch slot of ``past`` (the cache's keys / values) and attend to it.
        """
        if layout is not None:
            q, k, v = rearrange(self.qkv(x), "b n (three h e) -> three b h n e", three=3, h=self.heads)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            out = windowed_attention(q, k, v, layout)
        else:  # one frame, one position: the rotation is folded into the projection (five kernels fewer)
            q, k, v = rearrange(F.linear(x, *self.rotated_qkv(cos, sin)), "b n (three h e) -> three b h n e",
                                three=3, h=self.heads)
            keys, values = k, v
            if past is not None:  # the new frame goes into the cache's scratch slot: no concatenation
                n = k.shape[2]
                past[0][:, :, -n:], past[1][:, :, -n:] = k, v
                keys, values = past
            out = F.scaled_dot_product_attention(q, keys, values)  # (b, h, n, e)
        return self.proj(rearrange(out, "b h n e -> b n (h e)")), (k, v)


    def rotated_qkv(self, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The qkv weight (3·h·e, d) and bias with the rotary turn of one position (tables (1, e))
        applied to the rows of q and k: rope is linear, so rope(W·x + b) = rope(W)·x + rope(b)."""
        w = rearrange(torch.cat([self.qkv.weight, self.qkv.bias[:, None]], dim=1),
                      "(three h e) d -> three h d e", three=3, h=self.heads)  # d+1: the bias as one more column
        w = torch.cat([apply_rope(w[:2], cos, sin), w[2:]])
        w = rearrange(w, "three h d e -> (three h e) d")
        return w[:, :-1], w[:, -1]


class DiTCache:
    """Keys/values of the last ``C`` clean frames, per layer: a ring of frame slots, plus one
    scratch slot at the end where the frame being generated puts its own keys/values, so that a
    generation pass attends to one preallocated buffer instead of concatenating the cache anew.

    Rotary positions are applied before keys are stored, so slot order does not matter to
    attention; frame ``p`` lives in slot ``p % C``. The buffers keep the dtype they were made in
    (bf16 under autocast); everything written into them is cast to it.
    """

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], tokens_per_frame: int, next_pos: int):
        self.keys, self.values = keys, values  # per layer (b, heads, (C+1)·n, e): C ring slots, then scratch
        self.n = tokens_per_frame
        self.next_pos = next_pos  # position of the next frame to be generated
        self.last_latents: torch.Tensor | None = None  # (b, c, h, w) newest clean frame, kept by WorldModel
        self.recent: torch.Tensor | None = None  # (b, k, c, h, w) the last k clean inputs, for frame stacking
        self.memory = None  # a PoseMemory of past frames by camera pose (models with pose memory), kept by WorldModel

    @property
    def context_frames(self) -> int:
        return self.keys[0].shape[2] // self.n - 1

    @property
    def batch_size(self) -> int:
        return self.keys[0].shape[0]

    def rebase(self, shift: int, head_dim: int) -> None:
        """Move every position back by ``shift`` (a multiple of C, so ring slots stay put) by
        rotating the cached keys by −shift. Attention only sees position differences, so nothing
        changes but the size of the angles: long rollouts keep float32 rotary angles small."""
        C = self.context_frames
        if shift % C:
            raise ValueError(f"shift must be a multiple of the context length {C}, got {shift}.")
        cos, sin = rope_tables(torch.tensor([-shift], device=self.keys[0].device), head_dim)
        for i, k in enumerate(self.keys):
            self.keys[i] = apply_rope(k.float(), cos, sin).to(k.dtype)  # fp32: rotation tables at full precision
        self.next_pos -= shift

    def write(self, layer: int, kv: tuple[torch.Tensor, torch.Tensor], pos: int, rows: torch.Tensor | None = None) -> None:
        """Store one frame's keys / values (b or len(rows), heads, n, e) at frame position ``pos``."""
        s = (pos % self.context_frames) * self.n
        k, v = self.keys[layer], self.values[layer]
        if rows is None:
            k[:, :, s : s + self.n] = kv[0]
            v[:, :, s : s + self.n] = kv[1]
        else:  # index_put needs matching dtypes: under autocast the rotated keys are fp32, the cache bf16
            k[rows, :, s : s + self.n] = kv[0].to(k.dtype)
            v[rows, :, s : s + self.n] = kv[1].to(v.dtype)
