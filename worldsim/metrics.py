"""Image metrics for world-model evaluation, as pure functions on uint8 or [0, 1] tensors.

**PSNR** = 10·log10(1 / MSE) with pixel values in [0, 1].

**Pooled PSNR** over a set of rollouts = 10·log10(1 / mean squared error over all their pixels):
one MSE over everything, then the log. The per-rollout mean of PSNR is not used as the headline
because one rollout whose true frame equals its context (MSE → 0) sends it to infinity.

**Motion PSNR at horizon h**: PSNR over the pixels where the true frame ``t + h`` differs from the
last real context frame by more than 1/255 in any channel, i.e. exactly the pixels on which the
"repeat the last frame" baseline is wrong. Pooled the same way: squared errors summed over all
moving pixels of all rollouts, divided by their count (× 3 channels).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def to_unit(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def psnr_from_mse(mse: float) -> float:
    return float("inf") if mse <= 0 else 10.0 * math.log10(1.0 / mse)


def motion_mask(target: torch.Tensor, reference: torch.Tensor, threshold: float = 1.0 / 255) -> torch.Tensor:
    """(..., 3, H, W) frames -> (..., 1, H, W) bool: pixels whose value moved by more than ``threshold``."""
    return (to_unit(target) - to_unit(reference)).abs().amax(dim=-3, keepdim=True) > threshold + 1e-6


def squared_error_sums(pred: torch.Tensor, target: torch.Tensor, reference: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-item sums for pooling, on (b, 3, H, W) frames: total SE, pixel count, motion SE and count."""
    se = (to_unit(pred) - to_unit(target)) ** 2  # (b, 3, H, W)
    moving = motion_mask(target, reference).float()  # (b, 1, H, W)
    return {
        "se": se.flatten(1).sum(1),
        "n": torch.full((se.shape[0],), float(se[0].numel())),
        "motion_se": (se * moving).flatten(1).sum(1),
        "motion_n": moving.flatten(1).sum(1) * se.shape[1],
    }


def ssim(pred: torch.Tensor, target: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Mean structural similarity per item (Wang et al. 2004) with a uniform window; (b, 3, H, W) -> (b,)."""
    x, y = to_unit(pred), to_unit(target)
    c1, c2 = 0.01**2, 0.03**2
    pool = lambda t: F.avg_pool2d(t, window, stride=1)  # noqa: E731
    mx, my = pool(x), pool(y)
    vx, vy, cxy = pool(x * x) - mx**2, pool(y * y) - my**2, pool(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


# ----------------------------------------------------------------------------- blur and grain
MOVING_THRESHOLD = 0.1  # of the [0, 1] range (~26 levels of 255): sprites move, faint grain does not count
_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def laplacian_abs(x: torch.Tensor) -> torch.Tensor:
    """|∇²x| per pixel, channel by channel, on (b, 3, H, W) frames in [0, 1] (replicate padding) -> (b, 3, H, W)."""
    x = to_unit(x)
    k = _LAPLACIAN.to(x.device)[None, None].repeat(x.shape[1], 1, 1, 1)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=x.shape[1]).abs()


def sharpness_sums(pred: torch.Tensor, target: torch.Tensor, reference: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-item sums of mean |Laplacian| for the **sharpness ratio** (pooled: Σ pred / Σ true; 1.0 =
    as sharp as the game, below = blur, above = grain or artifacts), over the whole frame and over
    the *moving region*: pixels where the truth or the prediction differs from the last context
    frame ``reference`` by more than ``MOVING_THRESHOLD`` in some channel (an object, not faint
    grain: so a static background's grain cannot offset blurred sprites), grown by one pixel so
    that both sides of every moving edge count (the Laplacian's 3 × 3 support)."""
    lp, lt = laplacian_abs(pred), laplacian_abs(target)
    moving = (motion_mask(target, reference, MOVING_THRESHOLD) | motion_mask(pred, reference, MOVING_THRESHOLD)).float()
    moving = F.max_pool2d(moving, 3, stride=1, padding=1)
    return {"lap_pred": lp.flatten(1).sum(1), "lap_true": lt.flatten(1).sum(1),
            "moving_lap_pred": (lp * moving).flatten(1).sum(1), "moving_lap_true": (lt * moving).flatten(1).sum(1)}


# ----------------------------------------------------------------------------- distributions
def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (n, d) and (m, d) (the FID
    formula, Heusel et al. 2017): |μa − μb|² + tr Σa + tr Σb − 2 tr (Σa^½ Σb Σa^½)^½, in float64
    with symmetric eigendecompositions (valid when n < d and the covariances are singular). With
    few samples it is biased upwards (two sets of real frames score above 0): compare methods on
    the same windows, never with a figure computed on another number of samples."""
    if a.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"frechet_distance needs two (n >= 2, d) feature sets, got {tuple(a.shape)}, {tuple(b.shape)}")
    a, b = a.double(), b.double()
    mu = (a.mean(0) - b.mean(0)).pow(2).sum()
    ca, cb = torch.cov(a.T), torch.cov(b.T)

    def sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
        vals, vecs = torch.linalg.eigh((m + m.T) / 2)
        return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T

    root_a = sqrtm_psd(ca)
    cross = torch.linalg.eigvalsh(root_a @ cb @ root_a).clamp_min(0).sqrt().sum()
    return float(mu + ca.trace() + cb.trace() - 2 * cross)
