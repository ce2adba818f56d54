"""EDM maths: preconditioning, the Karras ladder, and the samplers checked against denoisers whose
answer is known in closed form (diffusers tests its schedulers with such dummies)."""

from __future__ import annotations

import math

import pytest
import torch

from worldsim import diffusion
from worldsim.diffusion import EDMConfig, Preconditioning


# ----------------------------------------------------------------------------- preconditioning
def test_precondition_hand_values():
    """σ = 0.5, σ_data = 1: c_skip = 1/1.25, c_out = 0.5/√1.25, c_in = 1/√1.25, c_noise = ln(0.5)/4."""
    pre = diffusion.precondition(torch.tensor(0.5, dtype=torch.float64), 1.0)
    assert pre.c_skip.item() == pytest.approx(0.8, abs=1e-12)
    assert pre.c_out.item() == pytest.approx(0.5 / math.sqrt(1.25), abs=1e-12)
    assert pre.c_in.item() == pytest.approx(1 / math.sqrt(1.25), abs=1e-12)
    assert pre.c_noise.item() == pytest.approx(math.log(0.5) / 4, abs=1e-12)


@pytest.mark.parametrize("sigma_data", [1.0, 0.5, 2.0])
def test_precondition_edm_identities(sigma_data):
    """EDM Appendix B.6: the network input and its effective training target both have unit variance."""
    sigma = torch.logspace(-3, 2, 50, dtype=torch.float64)
    pre = diffusion.precondition(sigma, sigma_data)
    d2, s2 = sigma_data**2, sigma**2
    # Var(c_in · (x0 + σ n)) = c_in² (σ_data² + σ²) = 1
    torch.testing.assert_close(pre.c_in**2 * (d2 + s2), torch.ones_like(sigma))
    # Var((x0 - c_skip (x0 + σ n)) / c_out) = ((1 - c_skip)² σ_data² + c_skip² σ²) / c_out² = 1
    torch.testing.assert_close(((1 - pre.c_skip) ** 2 * d2 + pre.c_skip**2 * s2) / pre.c_out**2, torch.ones_like(sigma))
    # c_skip → 1, c_out → 0 as σ → 0 (the denoiser passes a clean input through)
    assert pre.c_skip[0] > 1 - 1e-5 and pre.c_out[0] < 1e-2 * sigma_data
    assert pre.c_skip.shape == pre.c_out.shape == pre.c_in.shape == pre.c_noise.shape == sigma.shape


def test_x_prediction_preconditioning():
    """target="x": no skip, D = σ_data·F, so F's target is x0 / σ_data whatever the noise (the noisy
    input never passes through to the output); c_in and c_noise as EDM; the two agree at σ_max."""
    g = torch.Generator().manual_seed(0)
    sigma = torch.tensor([0.01, 0.5, 80.0], dtype=torch.float64)
    x0 = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64) * 0.7
    noisy = x0 + sigma[:, None, None, None] * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    pre = diffusion.precondition(sigma, 0.7, "x")
    edm = diffusion.precondition(sigma, 0.7)
    assert pre.c_skip.eq(0).all() and torch.allclose(pre.c_out, torch.full_like(sigma, 0.7))
    torch.testing.assert_close(pre.c_in, edm.c_in)
    torch.testing.assert_close(pre.c_noise, edm.c_noise)
    pre_b = Preconditioning(*(v[:, None, None, None] for v in pre))
    torch.testing.assert_close(diffusion.denoising_target(x0, noisy, pre_b), x0 / 0.7)
    torch.testing.assert_close(diffusion.denoise(diffusion.denoising_target(x0, noisy, pre_b), noisy, pre_b), x0)
    assert abs(edm.c_skip[-1].item()) < 1e-4 and edm.c_out[-1].item() == pytest.approx(0.7, rel=1e-4)
    with pytest.raises(ValueError, match="edm.target"):
        diffusion.precondition(sigma, 0.7, "eps")


def test_effective_target_has_unit_variance_empirically():
    g = torch.Generator().manual_seed(0)
    sigma_data, sigma = 0.7, torch.tensor(1.3)
    x0 = torch.randn(200_000, generator=g) * sigma_data
    noisy = x0 + sigma * torch.randn(200_000, generator=g)
    target = diffusion.denoising_target(x0, noisy, diffusion.precondition(sigma, sigma_data))
    assert target.std().item() == pytest.approx(1.0, abs=0.01)


def test_denoise_inverts_denoising_target():
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.002, 0.3, 1.0, 40.0], dtype=torch.float64)
    noisy = x0 + sigma[:, None, None, None] * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    pre = Preconditioning(*(v[:, None, None, None] for v in diffusion.precondition(sigma, 1.0)))
    target = diffusion.denoising_target(x0, noisy, pre)
    torch.testing.assert_close(diffusion.denoise(target, noisy, pre), x0)


def test_training_sigmas_log_normal_and_seeded():
    cfg = EDMConfig(p_mean=-0.4, p_std=1.2, p_sigma_max=0.0)
    s1 = diffusion.training_sigmas((100_000,), cfg, torch.Generator().manual_seed(3))
    s2 = diffusion.training_sigmas((100_000,), cfg, torch.Generator().manual_seed(3))
    assert torch.equal(s1, s2) and (s1 > 0).all()
    assert s1.log().mean().item() == pytest.approx(-0.4, abs=0.02)
    assert s1.log().std().item() == pytest.approx(1.2, abs=0.02)


def test_training_sigmas_share_at_sigma_max():
    cfg = EDMConfig(p_mean=-0.4, p_std=1.2, sigma_max=80.0, p_sigma_max=0.3)
    s = diffusion.training_sigmas((100_000,), cfg, torch.Generator().manual_seed(3))
    at_max = s == 80.0
    assert at_max.float().mean().item() == pytest.approx(0.3, abs=0.01)
    assert s[~at_max].log().mean().item() == pytest.approx(-0.4, abs=0.02)  # the rest stays log-normal


# ----------------------------------------------------------------------------- noise ladder
@pytest.mark.parametrize("steps", [2, 3, 10, 50])
def test_karras_sigmas(steps):
    s = diffusion.karras_sigmas(steps, 0.002, 80.0, 7.0)
    assert s.shape == (steps + 1,)
    assert s[0].item() == 80.0
    assert s[-1].item() == 0.0
    assert (s[1:] < s[:-1]).all(), "the ladder must decrease strictly"
    # EDM eq. 5 over steps + 1 levels, its σ_min end dropped: no evaluation is wasted at σ_min
    ramp = torch.linspace(0, 1, steps + 1, dtype=torch.float64)[:-1]
    eq5 = (80.0 ** (1 / 7) + ramp * (0.002 ** (1 / 7) - 80.0 ** (1 / 7))) ** 7
    torch.testing.assert_close(s[:-1].double(), eq5, rtol=1e-5, atol=0)
    assert s[-2].item() > 0.002


def test_karras_sigmas_rho_one_is_linear():
    s = diffusion.karras_sigmas(5, 1.0, 5.0, 1.0)
    torch.testing.assert_close(s, torch.tensor([5.0, 4.2, 3.4, 2.6, 1.8, 0.0]))


def test_every_sampling_step_moves_the_sample():
    """n steps are n denoiser evaluations that each change x (the old ladder ended with a call at
    σ_min = 0.002 that returned its input: "2 steps" was 1 step plus a no-op)."""
    for steps in (2, 3, 4):
        xs = []

        def d(x, sigma):
            xs.append(x.clone())
            return torch.ones_like(x)  # an oracle that knows the answer is 1

        noise = torch.randn(64, generator=torch.Generator().manual_seed(steps))
        out = diffusion.sample(d, noise, diffusion.karras_sigmas(steps, 0.002, 80.0, 7.0))
        xs.append(out)
        assert len(xs) == steps + 1
        moves = [(b - a).abs().mean().item() for a, b in zip(xs, xs[1:])]
        assert min(moves) > 1e-2, moves


def test_karras_sigmas_one_step():
    s = diffusion.karras_sigmas(1, 0.002, 5.0, 7.0)
    torch.testing.assert_close(s, torch.tensor([5.0, 0.0]))


@pytest.mark.parametrize("steps", [0, -1])
def test_karras_sigmas_rejects_no_steps(steps):
    with pytest.raises(ValueError, match="at least one step"):
        diffusion.karras_sigmas(steps, 0.002, 5.0, 7.0)


# ----------------------------------------------------------------------------- samplers
def test_euler_step_hand_value():
    # dx/dσ = (x - D)/σ = (3 - 1)/2 = 1; from σ = 2 to 0.5: x = 3 - 1.5 = 1.5
    out = diffusion.euler_step(torch.tensor(3.0), torch.tensor(1.0), 2.0, 0.5)
    assert out.item() == pytest.approx(1.5)


@pytest.mark.parametrize("solver", ["euler", "heun"])
@pytest.mark.parametrize("steps", [1, 2, 5, 17])
def test_sample_with_oracle_denoiser_returns_its_answer(solver, steps):
    """If D(x; σ) = x0 whatever x and σ, every step keeps x - x0 ∝ σ, and σ = 0 lands on x0 exactly."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 4, 3, 3, generator=g)
    noise = torch.randn(x0.shape, generator=g)
    sigmas = diffusion.karras_sigmas(steps, 0.002, 5.0, 7.0)
    out = diffusion.sample(lambda x, s: x0, noise, sigmas, solver)
    assert torch.equal(out, x0)


def _gaussian_denoiser(sigma_data: float):
    """Optimal denoiser for x0 ~ N(0, σ_data² I): D*(x; σ) = x · σ_data² / (σ_data² + σ²)."""
    return lambda x, s: x * (sigma_data**2 / (sigma_data**2 + s**2))


def _exact_solution(noise: torch.Tensor, sigma_max: float, sigma_data: float) -> torch.Tensor:
    """Probability-flow ODE dx/dσ = x σ / (σ_data² + σ²) solved exactly: x(σ) ∝ √(σ_data² + σ²),
    so from x(σ_max) = σ_max · noise, x(0) = σ_max · noise · σ_data / √(σ_data² + σ_max²)."""
    return noise * sigma_max * sigma_data / math.sqrt(sigma_data**2 + sigma_max**2)


@pytest.mark.parametrize("sigma_data", [1.0, 0.5])
def test_euler_converges_to_exact_ode_solution(sigma_data):
    noise = torch.randn(1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = _exact_solution(noise, 5.0, sigma_data)
    errors = []
    for steps in (4, 16, 64, 256, 1024):  # first order: the error halves as the steps double
        sigmas = diffusion.karras_sigmas(steps, 0.002, 5.0, 7.0).double()
        out = diffusion.sample(_gaussian_denoiser(sigma_data), noise, sigmas, "euler")
        errors.append((out - exact).abs().max().item())
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 2e-3 * exact.abs().max().item(), errors


@pytest.mark.parametrize("steps", [8, 16, 32, 64])
def test_heun_beats_euler_at_equal_steps(steps):
    # On this ladder (σ_max = 5, ρ = 7) Heun's first, very long step overshoots below ~8 steps and
    # Euler is then closer (2 steps: |err| 1.6 vs 0.8); from 8 steps on Heun wins and keeps winning.
    noise = torch.randn(1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = _exact_solution(noise, 5.0, 1.0)
    sigmas = diffusion.karras_sigmas(steps, 0.002, 5.0, 7.0).double()
    err = {s: (diffusion.sample(_gaussian_denoiser(1.0), noise, sigmas, s) - exact).abs().max().item()
           for s in ("euler", "heun")}
    assert err["heun"] < err["euler"], err


def test_heun_second_order():
    """Doubling the steps cuts Heun's error by ≈ 4 (second order), Euler's by ≈ 2."""
    noise = torch.ones(1, dtype=torch.float64)
    exact = _exact_solution(noise, 5.0, 1.0)

    def err(solver, steps):
        sig = diffusion.karras_sigmas(steps, 0.002, 5.0, 7.0).double()
        return (diffusion.sample(_gaussian_denoiser(1.0), noise, sig, solver) - exact).abs().item()

    assert err("heun", 32) / err("heun", 64) > 3.0
    assert 1.5 < err("euler", 32) / err("euler", 64) < 3.0


def test_sample_counts_denoiser_calls():
    calls = {"n": 0}

    def d(x, s):
        calls["n"] += 1
        return x * 0

    sigmas = diffusion.karras_sigmas(4, 0.002, 5.0, 7.0)
    diffusion.sample(d, torch.zeros(3), sigmas, "euler")
    assert calls["n"] == 4
    calls["n"] = 0
    diffusion.sample(d, torch.zeros(3), sigmas, "heun")
    assert calls["n"] == 4 + 3  # every step but the last gets a correction


def test_sample_starts_at_sigma_max():
    seen = []
    noise = torch.randn(8, generator=torch.Generator().manual_seed(2))
    diffusion.sample(lambda x, s: seen.append((x.clone(), s)) or x, noise, torch.tensor([3.0, 0.0]))
    assert seen[0][1] == 3.0 and torch.equal(seen[0][0], noise * 3.0)


def test_sample_rejects_unknown_solver():
    with pytest.raises(ValueError, match="euler"):
        diffusion.sample(lambda x, s: x, torch.zeros(2), torch.tensor([1.0, 0.0]), "rk4")
