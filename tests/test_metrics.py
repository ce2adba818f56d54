"""The figures the headline tables are made of, against values computed by hand: pooled and motion
PSNR, SSIM's fixed points, and the sharpness ratios that tell blur and grain apart."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from worldsim.metrics import (laplacian_abs, motion_mask, psnr_from_mse, sharpness_sums, squared_error_sums, ssim,
                              to_unit)


def frames(*values: float, size: int = 4) -> torch.Tensor:
    """One uint8 frame per value, every pixel and channel at that level: (b, 3, size, size)."""
    return torch.stack([torch.full((3, size, size), v, dtype=torch.uint8) for v in values])


def test_psnr_from_mse_by_hand():
    assert psnr_from_mse(0.01) == pytest.approx(20.0)
    assert psnr_from_mse(1e-4) == pytest.approx(40.0)
    assert psnr_from_mse(0.0) == math.inf


def test_pooled_psnr_is_one_mse_over_all_pixels_then_the_log():
    pred, true = frames(0, 0), frames(51, 0)  # item 0 off by 51/255 = 0.2 everywhere, item 1 exact
    sums = squared_error_sums(pred, true, true)
    assert sums["n"].tolist() == [48.0, 48.0]  # 3 × 4 × 4
    torch.testing.assert_close(sums["se"], torch.tensor([48 * 0.2**2, 0.0]))
    pooled = psnr_from_mse(float(sums["se"].sum() / sums["n"].sum()))
    assert pooled == pytest.approx(10 * math.log10(1 / (0.04 / 2)), abs=1e-4)  # mean MSE 0.02 -> 16.99 dB
    # the mean of per-item PSNRs would be infinite here: that is why the headline is pooled
    assert math.isinf(psnr_from_mse(float(sums["se"][1] / sums["n"][1])))


def test_motion_psnr_counts_only_pixels_that_moved_since_the_last_context_frame():
    last = frames(0)
    true = last.clone()
    true[0, :, 0, 0] = 255  # one pixel of the truth moved
    pred = frames(0)  # predicts "nothing moves": wrong on exactly that pixel
    sums = squared_error_sums(pred, true, last)
    assert sums["motion_n"].item() == 3.0  # one pixel × 3 channels
    assert sums["motion_se"].item() == pytest.approx(3.0)  # error 1.0 on each channel
    assert psnr_from_mse(sums["motion_se"].item() / sums["motion_n"].item()) == 0.0  # 10·log10(1/1)
    assert sums["se"].item() == pytest.approx(3.0)  # whole frame: the same error spread over 48 values
    assert psnr_from_mse(sums["se"].item() / sums["n"].item()) == pytest.approx(10 * math.log10(16), abs=1e-5)
    # a change of 1/255 is not motion (JPEG-like jitter of one level), 2/255 is
    assert not motion_mask(frames(1), frames(0)).any() and motion_mask(frames(2), frames(0)).all()


def test_ssim_fixed_points():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2, 3, 16, 16), generator=g, dtype=torch.uint8)
    torch.testing.assert_close(ssim(x, x), torch.ones(2))
    assert (ssim(x, 255 - x) < 0).all()  # anti-correlated structure


def sprite_scene(shift: int = 0) -> torch.Tensor:
    """A game-like frame: flat background and two small sharp-edged sprites, (1, 3, 32, 32) uint8."""
    f = torch.full((1, 3, 32, 32), 40, dtype=torch.uint8)
    f[:, :, 8:14, 6 + shift : 10 + shift] = 230
    f[:, 0, 20:24, 18 + shift : 24 + shift] = 200
    return f


def blur(x: torch.Tensor, k: int = 5) -> torch.Tensor:
    return (F.avg_pool2d(to_unit(x), k, 1, k // 2, count_include_pad=False) * 255).round().to(torch.uint8)


def ratios(pred: torch.Tensor, true: torch.Tensor, last: torch.Tensor) -> tuple[float, float]:
    s = sharpness_sums(pred, true, last)
    return float(s["lap_pred"].sum() / s["lap_true"].sum()), float(s["moving_lap_pred"].sum() / s["moving_lap_true"].sum())


def test_laplacian_of_flat_and_of_an_edge():
    assert laplacian_abs(frames(90, size=8)).max() == 0  # replicate padding: no border artefact
    step = torch.zeros(1, 3, 8, 8)
    step[..., 4:] = 1.0
    lap = laplacian_abs(step)
    assert lap[..., 3].eq(1).all() and lap[..., 4].eq(1).all() and lap[..., :3].eq(0).all()


def test_sharpness_ratio_sees_blur_below_one_and_a_sharp_shift_near_one():
    last, true = sprite_scene(0), sprite_scene(2)  # the sprites moved two pixels
    full_blur, moving_blur = ratios(blur(true), true, last)
    full_shift, moving_shift = ratios(sprite_scene(3), true, last)  # sharp, but one pixel off
    assert moving_blur < 0.6 and full_blur < 0.6
    assert moving_shift == pytest.approx(1.0, abs=0.15) and full_shift == pytest.approx(1.0, abs=1e-6)
    assert moving_blur < moving_shift


def test_moving_region_sharpness_is_not_fooled_by_background_grain():
    """Blurred sprites on a grainy background: over the whole frame the grain makes up for the blur
    (ratio ≈ 1 or above), on the moving region the blur shows."""
    last, true = sprite_scene(0), sprite_scene(2)
    g = torch.Generator().manual_seed(0)
    grain = (torch.rand(true.shape, generator=g) < 0.15).to(torch.uint8) * 12
    blurred_sprites = blur(true)
    static = ~(motion_mask(true, last) | motion_mask(blurred_sprites, last)).expand_as(true)
    pred = torch.where(static, (true.int() + grain).clamp(0, 255).to(torch.uint8), blurred_sprites)
    full, moving = ratios(pred, true, last)
    assert full > 0.9
    assert moving < 0.7
