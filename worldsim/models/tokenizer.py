"""The video tokenizer: a KL-regularised convolutional autoencoder (latent diffusion's
"autoencoder-KL", Rombach et al. 2022) mapping each frame to a small latent grid and back.

A frame ``(3, H, W)`` in [0, 1] becomes ``(latent_channels, H/f, W/f)`` with ``f = 2**(levels-1)``.
Frames are tokenized one by one (Sora's "video compression network" also compresses time; for
game frames at 15 fps the temporal redundancy is left to the DiT's attention).

Games draw small, fast objects (the Pong ball is ~1×2 pixels at 64×64), which an autoencoder
trained on plain MSE smooths away: they are a tiny share of the pixels. The training loss adds a
motion term, MSE over the pixels that change between consecutive frames, weighted by
``motion_weight`` (see :func:`tokenizer_loss`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


@dataclass
class TokenizerConfig:
    """Defaults are the ``small`` preset (configs/model/small.yaml)."""

    patch_size: int = 4  # pixel (un)shuffle stem: convolutions run at H/patch_size, not at full resolution
    channels: list[int] = field(default_factory=lambda: [64])  # per level after the stem; each extra level halves
    latent_channels: int = 16  # 16 × 16 × 16 latents of a 64 × 64 frame (the small preset)
    res_blocks: int = 2
    # "conv": residual conv levels with GroupNorm, whose statistics span the whole frame, so a 2-pixel
    # ball moves every latent cell (measured on Pong: all 256 by > 0.05 std). "patch": each latent cell
    # from its own patch_size² pixels alone (a per-position MLP, no normalisation across positions):
    # what does not change in the frame does not change in the latent (one level only).
    encoder: str = "conv"
    kl_weight: float = 1e-6
    motion_weight: float = 4.0

    @property
    def downsample(self) -> int:
        """Total spatial factor f: a frame of H×W becomes a latent of H/f × W/f."""
        return self.patch_size * 2 ** (len(self.channels) - 1)


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, c), c)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Encoder(nn.Module):
    """Pixel-unshuffle stem (each patch_size² block of pixels -> channels, lossless), then residual
    conv levels. Running the convolutions at 1/patch_size resolution is what makes the tokenizer
    cheap on a CPU; the lossless stem keeps 1-pixel sprites representable."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        ch, p = cfg.channels, cfg.patch_size
        self.stem = nn.Sequential(nn.PixelUnshuffle(p), nn.Conv2d(3 * p * p, ch[0], 1))
        layers: list[nn.Module] = []
        for i, c in enumerate(ch):
            c_prev = ch[max(i - 1, 0)]
            layers += [ResBlock(c_prev if j == 0 else c, c) for j in range(cfg.res_blocks)]
            if i < len(ch) - 1:
                layers.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.blocks = nn.Sequential(*layers)
        self.norm_out = _norm(ch[-1])
        self.conv_out = nn.Conv2d(ch[-1], 2 * cfg.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, 3, H, W) -> (b, 2c, H/f, W/f)
        return self.conv_out(F.silu(self.norm_out(self.blocks(self.stem(x)))))


class PatchEncoder(nn.Module):
    """A latent cell sees its own patch_size² pixels and nothing else: pixel-unshuffle, then an MLP
    applied at every position (1×1 convolutions, ``res_blocks`` residual hidden layers, no
    normalisation across positions). A change in the frame changes only the cells it covers, so the
    DiT's frame-change targets are as sparse as the motion itself."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        if len(cfg.channels) != 1:
            raise ValueError(f"model.tokenizer.encoder=patch has one level; got channels={list(cfg.channels)}. "
                             "Set model.tokenizer.channels=[64] (the downsampling is then patch_size).")
        c, p = cfg.channels[0], cfg.patch_size
        self.stem = nn.Sequential(nn.PixelUnshuffle(p), nn.Conv2d(3 * p * p, c, 1))
        self.hidden = nn.ModuleList(nn.Conv2d(c, c, 1) for _ in range(cfg.res_blocks))
        self.conv_out = nn.Conv2d(c, 2 * cfg.latent_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, 3, H, W) -> (b, 2c, H/p, W/p)
        h = self.stem(x)
        for layer in self.hidden:
            h = h + layer(F.silu(h))
        return self.conv_out(F.silu(h))


ENCODERS = {"conv": Encoder, "patch": PatchEncoder}


class Decoder(nn.Module):
    """Mirror of the encoder, ending in a pixel-shuffle head: each latent position paints its own
    patch_size² block of pixels, so edges stay sharp."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        ch, p = list(reversed(cfg.channels)), cfg.patch_size
        self.conv_in = nn.Conv2d(cfg.latent_channels, ch[0], 3, padding=1)
        layers: list[nn.Module] = []
        for i, c in enumerate(ch):
            layers += [ResBlock(c, c) for _ in range(cfg.res_blocks)]
            if i < len(ch) - 1:
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, ch[i + 1], 3, padding=1)]
        self.blocks = nn.Sequential(*layers)
        self.norm_out = _norm(ch[-1])
        self.head = nn.Sequential(nn.Conv2d(ch[-1], 3 * p * p, 3, padding=1), nn.PixelShuffle(p))

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (b, c, h, w) -> (b, 3, H, W) in ~[0, 1]
        return self.head(F.silu(self.norm_out(self.blocks(self.conv_in(z))))) + 0.5


class Posterior(NamedTuple):
    mean: torch.Tensor  # (b, c, h, w)
    logvar: torch.Tensor

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + (0.5 * self.logvar).exp() * eps

    def kl(self) -> torch.Tensor:  # KL(q || N(0, I)) per element, averaged
        return 0.5 * (self.mean**2 + self.logvar.exp() - 1.0 - self.logvar).mean()


class Tokenizer(nn.Module):
    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.encoder not in ENCODERS:
            raise ValueError(f"model.tokenizer.encoder must be one of {sorted(ENCODERS)}, got {cfg.encoder!r}.")
        self.encoder = ENCODERS[cfg.encoder](cfg)
        self.decoder = Decoder(cfg)
        # Per-channel statistics of the latents, measured on the training data after training,
        # so the diffusion model sees unit-variance latents (latent diffusion's "scale factor").
        self.register_buffer("latent_mean", torch.zeros(cfg.latent_channels, 1, 1))
        self.register_buffer("latent_std", torch.ones(cfg.latent_channels, 1, 1))

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.latent_mean) / self.latent_std

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.latent_std + self.latent_mean

    @torch.no_grad()
    def set_latent_stats(self, z: torch.Tensor) -> None:
        """Measure per-channel mean/std from raw latents ``(..., c, h, w)``."""
        flat = z.movedim(-3, 0).reshape(z.shape[-3], -1)  # (c, everything else)
        self.latent_mean.copy_(flat.mean(dim=1).view(-1, 1, 1))
        self.latent_std.copy_(flat.std(dim=1).clamp_min(1e-4).view(-1, 1, 1))

    def check_frame_size(self, h: int, w: int) -> None:
        f = self.cfg.downsample
        if h % f or w % f:
            raise ValueError(
                f"Frames of {h}×{w} do not fit this tokenizer: both sides must be divisible by its "
                f"downsampling factor {f}. Use env.kwargs.frame_size={max(f, (h // f) * f)} or a tokenizer "
                "with fewer levels (model.tokenizer.channels)."
            )

    def posterior(self, frames: torch.Tensor) -> Posterior:
        """``frames`` (b, 3, H, W) float in [0, 1]."""
        self.check_frame_size(*frames.shape[-2:])
        mean, logvar = self.encoder(frames * 2.0 - 1.0).chunk(2, dim=1)
        return Posterior(mean, logvar.clamp(-30.0, 20.0))

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Deterministic latents (the posterior mean) of ``(..., 3, H, W)`` frames in [0, 1]."""
        lead = frames.shape[:-3]
        # contiguous in and out: convolutions choose their algorithm (and rounding) by memory layout,
        # and frames from numpy arrive channels-last; results must not depend on where frames came from
        z = self.posterior(frames.reshape(-1, *frames.shape[-3:]).contiguous()).mean
        return z.reshape(*lead, *z.shape[1:]).contiguous()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(..., c, h, w)`` latents -> ``(..., 3, H, W)`` frames (unclamped)."""
        lead = z.shape[:-3]
        x = self.decoder(z.reshape(-1, *z.shape[-3:]).contiguous())
        return x.reshape(*lead, *x.shape[1:])


class TokenizerLoss(NamedTuple):
    loss: torch.Tensor
    mse: torch.Tensor
    motion_mse: torch.Tensor
    kl: torch.Tensor


def tokenizer_loss(model: Tokenizer, pairs: torch.Tensor, generator: torch.Generator | None = None) -> TokenizerLoss:
    """Loss on consecutive frame pairs ``(b, 2, 3, H, W)`` in [0, 1]; the second frame is reconstructed.

    loss = MSE + motion_weight · MSE over the changed pixels + kl_weight · KL, where the changed
    pixels are those whose value differs between the two frames in any channel (the pixels a
    "repeat the last frame" predictor gets wrong, i.e. where the game's motion is).
    """
    prev, frames = pairs[:, 0], pairs[:, 1]
    post = model.posterior(frames)
    recon = model.decoder(post.sample(generator))
    err = (recon - frames) ** 2  # (b, 3, H, W)
    moving = ((frames - prev).abs().amax(dim=1, keepdim=True) > 0.5 / 255).float()  # (b, 1, H, W)
    mse = err.mean()
    motion_mse = (err * moving).sum() / (moving.sum() * 3).clamp_min(1.0)
    kl = post.kl()
    loss = mse + model.cfg.motion_weight * motion_mse + model.cfg.kl_weight * kl
    return TokenizerLoss(loss, mse, motion_mse, kl)


def frames_to_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames (any leading dims, channels-first) -> float32 in [0, 1]."""
    return frames.float().div_(255.0)


def float_to_frames(x: torch.Tensor) -> torch.Tensor:
    """float frames in ~[0, 1] -> uint8, rounded and clamped."""
    return x.clamp(0.0, 1.0).mul(255.0).round_().to(torch.uint8)


def channels_last_frames(x: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) -> (..., H, W, 3): tensors back to the numpy image convention."""
    return rearrange(x, "... c h w -> ... h w c")
