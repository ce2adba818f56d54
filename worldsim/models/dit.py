"""An action-conditioned, temporally causal Diffusion Transformer over spacetime latent patches.

Tokens are ``patch_size × patch_size`` patches of the tokenizer's latent frames (Sora's "spacetime
patches", ViViT's tubelets of one frame). The model sees two streams of frames:

* the **clean stream**: past latent frames (lightly noised during training, as GameNGen's noise
  augmentation), each conditioned on the action that led to it;
* the **noisy stream**: the frame being generated at noise level σ, conditioned on σ and on the
  action just taken. Each of its tokens also carries the same patch of the last ``stack_frames``
  clean frames (channel concatenation, as DIAMOND stacks frames into its U-Net's input) and an
  additive embedding of the action.

With pose memory (:mod:`worldsim.models.memory`) every token of the generated frame also carries
the same patch of one retrieved past frame, and an embedding of where that frame was seen from.

Attention (:mod:`worldsim.models.attention`) is full over the tokens of one frame and causal over
frames, within a sliding window of ``context_frames`` past frames; generation caches the keys and
values of clean frames, so each new frame costs only its own tokens.

Training is teacher forcing on both streams at once: a window of ``t`` frames gives ``t - 1``
denoising targets in a single pass, as an LLM learns every next token of a sequence together.

Conditioning is DiT's adaLN-Zero (Peebles & Xie 2023): per frame, the noise-level embedding plus
the action embedding (plus, for a shortcut model, an embedding of the generated frame's step size:
:mod:`worldsim.diffusion`) regress shift/scale/gate of every block, gates initialised to zero so a fresh
block is the identity. The MLP of every block is SANA's Mix-FFN (a depthwise 3×3 convolution over
the frame's patch grid). Positions: 2D sin-cos over the patch grid, for whatever grid arrives, and
rotary embeddings over time (:mod:`worldsim.models.positions`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from worldsim.models.attention import Attention, DiTCache, WindowLayout
from worldsim.models.memory import MEMORY_FEATURES
from worldsim.models.positions import modulate, rope_tables, sincos_2d, timestep_embedding

ACTION_TOKEN_STD = 0.02  # init scale of the action embedding added to the generated frame's tokens


@dataclass
class DiTConfig:
    """Defaults are the ``small`` preset (configs/model/small.yaml)."""

    latent_channels: int = 16
    patch_size: int = 2
    width: int = 160
    depth: int = 4
    heads: int = 2  # head dim 80: CPU attention kernels are far faster than with 32
    mlp_ratio: float = 3.0
    num_actions: int = 18
    context_frames: int = 4  # C: past frames each frame attends to
    # Init scale of the adaLN action embeddings: DiT's 0.02 leaves the action ignored for thousands of
    # steps under adaLN-Zero (its gradient starts at zero); 1.0 moves the output from the first step.
    action_embed_std: float = 1.0
    # How many of the last clean frames every token of the generated frame carries (1..context_frames):
    # a direct, local path that makes "copy what stays, move what moves" learnable in minutes.
    stack_frames: int = 4
    # The Mix-FFN's GELU: "none" (exact, erf) or "tanh" (the approximation of models trained before
    # December 2026, which their checkpoints keep). Exact is 4.6x faster on CPU (measured, bf16 and fp32).
    gelu: str = "none"


class DiTOutput(NamedTuple):
    raw: torch.Tensor  # (b, t-1, c, h, w) raw network output F for the noisy frames (EDM eq. 7)
    features: torch.Tensor  # (b, t, n, d) clean-stream token features, for the reward / end heads


class MixFFN(nn.Module):
    """The MLP with a depthwise 3×3 convolution over each frame's patch grid between its two linear
    layers (SANA's Mix-FFN, Xie et al. 2024; PVTv2): a local, translation-equivariant path that lets
    a small model learn "this sprite moved one patch" in minutes. It mixes tokens within a frame only,
    so causality over frames and the key/value cache are unchanged."""

    def __init__(self, width: int, hidden: int, gelu: str = "none") -> None:
        super().__init__()
        if gelu not in ("none", "tanh"):
            raise ValueError(f"dit.gelu must be 'none' (exact) or 'tanh', got {gelu!r}.")
        self.gelu = gelu
        self.fc1 = nn.Linear(width, hidden)
        self.dw = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        # x (b, F, n, d) with n = hp·wp tokens per frame
        b = x.shape[0]
        h = rearrange(self.fc1(x), "b f (hh ww) e -> (b f) e hh ww", hh=hw[0])
        h = F.gelu(self.dw(h), approximate=self.gelu)
        return self.fc2(rearrange(h, "(b f) e hh ww -> b f (hh ww) e", b=b))


def norm_modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """LayerNorm without affine, then adaLN modulation, in x's dtype. Under bf16 autocast LayerNorm
    would return fp32 (a copy that the next linear casts straight back); its bf16 kernel accumulates
    in fp32 anyway, so the only difference is one rounding."""
    with torch.autocast(x.device.type, enabled=False):
        y = F.layer_norm(x, x.shape[-1:], eps=eps)
    return modulate(y, shift.to(x.dtype), scale.to(x.dtype))


class DiTBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float, gelu: str = "none") -> None:
        super().__init__()
        self.attn = Attention(width, heads)
        self.mlp = MixFFN(width, int(width * mlp_ratio), gelu)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))

    def forward(self, x: torch.Tensor, cond: torch.Tensor, hw: tuple[int, int], rope: tuple[torch.Tensor, torch.Tensor],
                layout: WindowLayout | None, past: tuple[torch.Tensor, torch.Tensor] | None = None):
        # x (b, F·n, d) tokens of F frames of hw = (hp, wp) patches; cond (b, F, d) one conditioning
        # vector per frame, broadcast over the frame's n tokens (no (b, F·n, 6d) copy)
        f, n = cond.shape[1], hw[0] * hw[1]
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(cond)[:, :, None].chunk(6, dim=-1)  # each (b, F, 1, d)
        x = x.unflatten(1, (f, n))  # (b, F, n, d)
        h, kv = self.attn(norm_modulate(x, sh1, sc1).flatten(1, 2), *rope, layout, past)
        x = torch.addcmul(x, g1, h.unflatten(1, (f, n)))  # x + g1 · h in one kernel
        x = torch.addcmul(x, g2, self.mlp(norm_modulate(x, sh2, sc2), hw))
        return x.flatten(1, 2), kv


class FinalLayer(nn.Module):
    def __init__(self, width: int, out_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, out_dim)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))

    def forward(self, x: torch.Tensor, cond: torch.Tensor, n: int) -> torch.Tensor:
        shift, scale = self.ada(cond)[:, :, None].chunk(2, dim=-1)  # (b, F, 1, d)
        return self.linear(norm_modulate(x.unflatten(1, (cond.shape[1], n)), shift, scale).flatten(1, 2))


class DiT(nn.Module):
    REBASE_AT = 4096  # frame position beyond which the cache's rotary angles are moved back

    def __init__(self, cfg: DiTConfig, memory: bool = False, step_classes: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.memory = memory  # one retrieved frame per generated frame (WorldModelConfig.memory_span > 0)
        # shortcut models: the generated frame's step-size class 0..step_classes-1 (0: the plain denoiser)
        self.step_embed = nn.Embedding(step_classes, cfg.width) if step_classes else None
        d, p, c = cfg.width, cfg.patch_size, cfg.latent_channels
        if not 1 <= cfg.stack_frames <= cfg.context_frames:
            raise ValueError(f"stack_frames={cfg.stack_frames} must be between 1 and context_frames={cfg.context_frames}.")
        self.patch_embed = nn.Conv2d(c, d, p, stride=p)  # clean frames
        self.noisy_embed = nn.Conv2d(c * (1 + cfg.stack_frames + memory), d, p, stride=p)  # stacked clean (+ memory) + noisy
        if memory:  # where the memory frame was seen from, relative to the frame being generated
            self.memory_embed = nn.Sequential(nn.Linear(MEMORY_FEATURES, d), nn.SiLU(), nn.Linear(d, d))
        self.head_dim = d // cfg.heads
        self.token_action = nn.Embedding(cfg.num_actions + 1, d)
        self.noise_embed = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.action_embed = nn.Embedding(cfg.num_actions + 1, d)  # last index: "no action" (first frame)
        self.blocks = nn.ModuleList(DiTBlock(d, cfg.heads, cfg.mlp_ratio, cfg.gelu) for _ in range(cfg.depth))
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
            nn.init.xavier_uniform_(conv.weight.view(conv.weight.shape[0], -1))
            nn.init.zeros_(conv.bias)
        # The noisy frame's own channels start at zero (ControlNet's "zero convolution"): at the high
        # noise levels where few-step sampling predicts, c_in·x is unit-variance noise that would swamp
        # the stacked clean frames; the model lets the noisy input in as far as it helps.
        nn.init.zeros_(self.noisy_embed.weight[:, -self.cfg.latent_channels:])
        nn.init.normal_(self.action_embed.weight, std=self.cfg.action_embed_std)
        nn.init.normal_(self.token_action.weight, std=ACTION_TOKEN_STD)
        for layer in (self.noise_embed[0], self.noise_embed[2]):
            nn.init.normal_(layer.weight, std=0.02)
        for ada in [block.ada for block in self.blocks] + [self.final.ada]:
            nn.init.zeros_(ada[-1].weight)
            nn.init.zeros_(ada[-1].bias)
        nn.init.zeros_(self.final.linear.weight)
        nn.init.zeros_(self.final.linear.bias)
        if self.memory:  # the memory's pose embedding starts at zero, as the gates do
            nn.init.zeros_(self.memory_embed[-1].weight)
        if self.step_embed is not None:  # every step size starts as the plain denoiser
            nn.init.zeros_(self.step_embed.weight)

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

    def _tokens(self, conv: nn.Conv2d, frames: torch.Tensor) -> torch.Tensor:
        """(b, t, c', h, w) -> (b, t·n, d) patch tokens with 2D positions."""
        hp, wp = self.grid(*frames.shape[-2:])
        x = conv(rearrange(frames, "b t c h w -> (b t) c h w"))  # (b·t, d, hp, wp)
        # positions first: the sum takes their contiguous (token, channel) layout, not the conv's
        # transposed one, which every later kernel of the pass would otherwise inherit
        x = sincos_2d(hp, wp, self.cfg.width).to(x) + rearrange(x, "(b t) d h w -> b t (h w) d", b=frames.shape[0])
        return rearrange(x, "b t n d -> b (t n) d")

    def embed_frames(self, z: torch.Tensor) -> torch.Tensor:
        """Clean latents (b, t, c, h, w) -> tokens (b, t·n, d)."""
        return self._tokens(self.patch_embed, z)

    def embed_noisy(self, noisy: torch.Tensor, stacked: torch.Tensor, actions: torch.Tensor,
                    memory: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Tokens of frames being generated: noisy (b, t, c, h, w), ``stacked`` (b, t, k, c, h, w) the
        last k clean frames before each (oldest first), ``actions`` (b, t) -> (b, t·n, d). ``memory``
        (pose memory only): the retrieved frames (b, t, c, h, w) and their features (b, t, 4)."""
        if self.memory != (memory is not None):
            raise ValueError("this DiT was built with pose memory: pass memory=(latents, features)" if self.memory
                             else "this DiT has no pose memory (model.memory_span=0): do not pass memory")
        parts = [stacked] + ([memory[0][:, :, None].to(stacked.dtype)] if memory is not None else [])
        frames = torch.cat([*parts, noisy[:, :, None]], dim=2)  # (b, t, k+1(+1), c, h, w), the noisy frame last
        x = self._tokens(self.noisy_embed, rearrange(frames, "b t k c h w -> b t (k c) h w"))
        n = x.shape[1] // noisy.shape[1]
        extra = self.token_action(actions)
        if memory is not None:
            extra = extra + self.memory_embed(memory[1].to(extra.dtype))
        return x + extra.to(x.dtype).repeat_interleave(n, dim=1)

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

    def condition(self, c_noise: torch.Tensor, prev_actions: torch.Tensor, step: torch.Tensor | None = None) -> torch.Tensor:
        """Per-frame conditioning vectors: noise level + action that led to the frame (+ the step-size
        class ``step`` of a generated frame, shortcut models only; clean frames take none). (b, F) -> (b, F, d)."""
        cond = self.noise_embed(timestep_embedding(c_noise * 1000.0, 256)) + self.action_embed(prev_actions)
        if step is not None:
            if self.step_embed is None:
                raise ValueError("this DiT has no step-size conditioning (model.edm.shortcut_levels=0): do not pass step")
            cond = cond + self.step_embed(step)
        return cond

    def rope(self, frame_pos: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotary tables for the tokens of frames at ``frame_pos`` (F,), ``n`` tokens each: (F·n, e) twice."""
        return rope_tables(frame_pos.repeat_interleave(n), self.head_dim)

    # ------------------------------------------------------------------ training pass
    def forward(self, clean: torch.Tensor, clean_c_noise: torch.Tensor, noisy: torch.Tensor,
                noisy_c_noise: torch.Tensor, prev_actions: torch.Tensor,
                memory: tuple[torch.Tensor, torch.Tensor] | None = None, step: torch.Tensor | None = None) -> DiTOutput:
        """Teacher-forced pass over a window.

        clean (b, t, c, h, w) and clean_c_noise (b, t): the (noise-augmented, c_in-scaled) clean frames;
        noisy (b, t-1, c, h, w) and noisy_c_noise (b, t-1): noisy copies of frames 1..t-1;
        prev_actions (b, t): the action that led to each frame (``null_action`` for frame 0);
        memory (pose memory only): retrieved frames (b, t-1, c, h, w) and features (b, t-1, 4) of frames 1..t-1;
        step (shortcut models only): the step-size class (b, t-1) of each noisy frame.
        """
        b, t, c, h, w = clean.shape
        hp, wp = self.grid(h, w)
        n = hp * wp
        dev = clean.device
        x = torch.cat([self.embed_frames(clean), self.embed_noisy(noisy, self.stack(clean), prev_actions[:, 1:], memory)],
                      dim=1).float()  # (b, (2t-1)·n, d); training keeps the residual stream in fp32
        cond = torch.cat([self.condition(clean_c_noise, prev_actions),
                          self.condition(noisy_c_noise, prev_actions[:, 1:], step)], dim=1)  # (b, 2t-1, d)
        rope = self.rope(torch.cat([torch.arange(t, device=dev), torch.arange(1, t, device=dev)]), n)
        layout = WindowLayout.build(t, n, self.cfg.context_frames, True, dev)
        for block in self.blocks:
            x, _ = block(x, cond, (hp, wp), rope, layout)
        features = rearrange(x[:, : t * n], "b (t n) d -> b t n d", t=t)
        out = self.final(x[:, t * n :], cond[:, t:], n)
        return DiTOutput(self.unembed(out, t - 1, h, w), features)

    # ------------------------------------------------------------------ cached generation
    def new_cache(self, batch_size: int, hw: tuple[int, int], like: torch.Tensor) -> DiTCache:
        """An empty cache for ``batch_size`` rollouts of latent frames of size ``hw`` (dtype / device of ``like``)."""
        hp, wp = self.grid(*hw)
        C, n = self.cfg.context_frames, hp * wp
        shape = (batch_size, self.cfg.heads, (C + 1) * n, self.head_dim)  # C ring slots + scratch
        cache = DiTCache([like.new_zeros(shape) for _ in self.blocks], [like.new_zeros(shape) for _ in self.blocks], n, C)
        cache.recent = torch.zeros((batch_size, self.cfg.stack_frames, self.cfg.latent_channels, *hw), device=like.device)
        return cache

    @torch.no_grad()
    def encode_context(self, clean: torch.Tensor, c_noise: torch.Tensor, prev_actions: torch.Tensor, start_pos: int = 0,
                       cache: DiTCache | None = None, rows: torch.Tensor | None = None) -> DiTCache:
        """Encode ``C`` context frames (b, C, c, h, w) into a new cache (or into ``rows`` of ``cache``),
        at frame positions ``start_pos .. start_pos + C - 1``."""
        b, t, c, h, w = clean.shape
        C = self.cfg.context_frames
        if t != C:
            raise ValueError(f"the context must hold exactly {C} frames (the model's context_frames), got {t}.")
        hp, wp = self.grid(h, w)
        n = hp * wp
        x = self.embed_frames(clean)
        cond = self.condition(c_noise, prev_actions)
        rope = self.rope(torch.arange(start_pos, start_pos + t, device=clean.device), n)
        layout = WindowLayout.build(t, n, C, False, clean.device)
        if cache is None:
            cache = self.new_cache(b, (h, w), x)
            cache.next_pos = start_pos + t
        recent = clean[:, t - self.cfg.stack_frames :].to(cache.recent.dtype)
        if rows is None:
            cache.recent = recent.clone()
        else:
            cache.recent[rows] = recent
        for i, block in enumerate(self.blocks):
            x, (k, v) = block(x, cond, (hp, wp), rope, layout)
            for f in range(t):
                sl = slice(f * n, (f + 1) * n)
                cache.write(i, (k[:, :, sl], v[:, :, sl]), start_pos + f, rows)
        return cache

    def _cached_pass(self, z: torch.Tensor, c_noise: torch.Tensor, action: torch.Tensor, cache: DiTCache,
                     append: bool, memory: tuple[torch.Tensor, torch.Tensor] | None = None,
                     step: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame (b, c, h, w) through every block against the cache -> tokens (b, n, d), cond (b, 1, d).
        ``append``: it is a clean frame, whose keys / values go into the ring. ``memory``: the noisy
        frame's retrieved frame (b, c, h, w) and features (b, 4) (pose memory only); ``step`` its step-size
        class (b,) (shortcut models only)."""
        # every token of the frame sits at the same time position: one (1, e) table, broadcast
        cos, sin = rope_tables(torch.tensor([cache.next_pos], device=z.device), self.head_dim)
        x, cond, kvs = self._frame_pass(z, c_noise, action, cache.recent, cos, sin, cache.keys, cache.values, append,
                                        memory, step)
        if append:
            for i, kv in enumerate(kvs):
                cache.write(i, kv, cache.next_pos)
        return x, cond

    def _frame_pass(self, z: torch.Tensor, c_noise: torch.Tensor, action: torch.Tensor, recent: torch.Tensor,
                    cos: torch.Tensor, sin: torch.Tensor, keys: list[torch.Tensor], values: list[torch.Tensor],
                    append: bool, memory: tuple[torch.Tensor, torch.Tensor] | None = None,
                    step: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """The tensor work of :meth:`_cached_pass`, free of Python state (positions arrive as tables),
        so that it can be traced or compiled as one function; writes only the caches' scratch slots."""
        hp, wp = self.grid(*z.shape[-2:])
        if append:
            x = self.embed_frames(z[:, None])  # (b, n, d)
        else:
            mem = None if memory is None else (memory[0][:, None], memory[1][:, None])
            x = self.embed_noisy(z[:, None], recent[:, None].to(z.dtype), action[:, None], mem)
        cond = self.condition(c_noise[:, None], action[:, None], None if step is None else step[:, None])  # (b, 1, d)
        kvs = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, cond, (hp, wp), (cos, sin), None, (keys[i], values[i]))
            kvs.append(kv)
        return x, cond, kvs

    def compile_generation(self) -> None:
        """Compile the cached per-frame pass with inductor, the weights frozen into the graph: for
        inference only (a model compiled so must not train afterwards). The first step of each batch
        size pays the compile; on CPU the compiled dream measured no faster than eager (docs/benchmarks.md)."""
        if not (shutil.which("g++") or shutil.which("c++")):
            raise RuntimeError("compiling the dream needs a C++ compiler (Debian: apt install g++); "
                               "or run without compile (compile=false).")
        self._frame_pass = torch.compile(self._frame_pass, dynamic=False, options={"freezing": True})

    @torch.no_grad()
    def denoise_next(self, noisy: torch.Tensor, c_noise: torch.Tensor, action: torch.Tensor, cache: DiTCache,
                     memory: tuple[torch.Tensor, torch.Tensor] | None = None,
                     step: torch.Tensor | None = None) -> torch.Tensor:
        """Raw output F for the next frame (b, c, h, w) at noise ``c_noise`` (b,), given the cache
        (and, with pose memory, the retrieved frame (b, c, h, w) and its features (b, 4); for a
        shortcut model, the step-size class (b,))."""
        x, cond = self._cached_pass(noisy, c_noise, action, cache, append=False, memory=memory, step=step)
        h, w = noisy.shape[-2:]
        return self.unembed(self.final(x, cond, x.shape[1]), 1, h, w)[:, 0]

    @torch.no_grad()
    def append_frame(self, clean: torch.Tensor, c_noise: torch.Tensor, action: torch.Tensor, cache: DiTCache) -> torch.Tensor:
        """Append a clean frame (b, c, h, w) reached by ``action`` to the cache; returns its token features (b, n, d)."""
        x, _ = self._cached_pass(clean, c_noise, action, cache, append=True)
        cache.recent = torch.cat([cache.recent[:, 1:], clean[:, None].to(cache.recent.dtype)], dim=1)
        cache.next_pos += 1
        if cache.next_pos >= self.REBASE_AT:
            C = self.cfg.context_frames
            cache.rebase((cache.next_pos - C) // C * C, self.head_dim)
        return x
