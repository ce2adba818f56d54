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


# ----------------------------------------------------------------------------- shortcut models
def test_shortcut_class_names_the_valid_step_counts():
    assert [diffusion.shortcut_class(s, 16) for s in (1, 2, 4, 8, 16)] == [4, 3, 2, 1, 0]
    for steps in (0, 3, 5, 32):
        with pytest.raises(ValueError, match="1, 2, 4, 8, 16 steps"):
            diffusion.shortcut_class(steps, 16)


@pytest.mark.parametrize("kw, match", [({"shortcut_levels": 3}, "power of two"), ({"shortcut_levels": 1}, "power of two"),
                                       ({"shortcut_levels": 8, "shortcut_share": 0.0}, "shortcut_share"),
                                       ({"shortcut_levels": 8, "solver": "heun"}, "solver=euler"),
                                       ({"shortcut_levels": 8, "sampling_steps": 3}, "1, 2, 4, 8 steps")])
def test_check_shortcut_refuses_settings_that_cannot_work(kw, match):
    with pytest.raises(ValueError, match=match):
        diffusion.check_shortcut(EDMConfig(**kw))
    diffusion.check_shortcut(EDMConfig())  # off
    diffusion.check_shortcut(EDMConfig(shortcut_levels=8, sampling_steps=2))


def test_shortcut_ladders_nest():
    """A s-step sampler visits every (N/s)-th level of the N-level ladder: the levels shortcuts train at."""
    full = diffusion.karras_sigmas(16, 2e-3, 80.0, 7.0)
    for s in (1, 2, 4, 8):
        torch.testing.assert_close(diffusion.karras_sigmas(s, 2e-3, 80.0, 7.0), full[:: 16 // s], rtol=1e-5, atol=1e-6)


def test_shortcut_draws_lie_on_the_samplers_grid_and_are_seeded():
    j, i = diffusion.shortcut_draws((4000,), 16, torch.Generator().manual_seed(0))
    d = 2**j
    assert set(j.tolist()) == {1, 2, 3, 4}
    assert (i % d == 0).all() and (i >= 0).all() and (i + d <= 16).all()
    assert set(i[j == 1].tolist()) == set(range(0, 16, 2))  # every start level of the 8-step sampler
    j2, i2 = diffusion.shortcut_draws((4000,), 16, torch.Generator().manual_seed(0))
    assert torch.equal(j, j2) and torch.equal(i, i2)


@pytest.mark.parametrize("sigma_b", [0.0, 0.7])
def test_shortcut_estimate_steps_onto_the_landing_point(sigma_b):
    g = torch.Generator().manual_seed(0)
    x_a, x_b = torch.randn(5, generator=g), torch.randn(5, generator=g)
    est = diffusion.shortcut_estimate(x_a, x_b, torch.tensor(3.0), torch.tensor(sigma_b))
    torch.testing.assert_close(diffusion.euler_step(x_a, est, 3.0, sigma_b), x_b)


def test_shortcut_targets_are_two_half_steps_of_the_class_below():
    """With a denoiser whose answer depends on σ and the class in a known way, the target of class j
    is the estimate of one step landing where two Euler steps of class j-1 land."""
    cfg = EDMConfig(shortcut_levels=8)

    def denoiser(x, s, j):
        return x * (0.5 + 0.1 * j).view(*j.shape, 1) / (1 + s.view(*s.shape, 1))

    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(3, 5, 2, generator=g)
    s_a, x_a, j, est = diffusion.shortcut_targets(denoiser, x0, cfg, torch.Generator().manual_seed(1))
    ladder = diffusion.karras_sigmas(8, cfg.sigma_min, cfg.sigma_max, cfg.rho)
    for m in range(3):
        for t in range(5):
            k = int(j[m, t])
            i = int((ladder - s_a[m, t]).abs().argmin())
            half = 2 ** (k - 1)
            sa, smid, sb = (float(ladder[i + q * half]) for q in range(3))
            c = torch.tensor([k - 1])
            x = x_a[m, t]
            x_mid = diffusion.euler_step(x, denoiser(x[None], torch.tensor([sa]), c)[0], sa, smid)
            x_b = diffusion.euler_step(x_mid, denoiser(x_mid[None], torch.tensor([smid]), c)[0], smid, sb)
            torch.testing.assert_close(diffusion.euler_step(x, est[m, t], sa, sb), x_b, rtol=1e-4, atol=1e-4)
    assert all(bool((ladder[:-1] == v).any()) for v in s_a.flatten())  # every start level is a ladder level


def test_shortcut_targets_of_a_perfect_point_mass_denoiser_are_the_point():
    """Data that is one point: D(x; σ) = the point at every level, trajectories are straight, and every
    class's target is the point itself (no bias from the construction)."""
    point = torch.full((2, 4, 3), 0.75)
    _, _, _, est = diffusion.shortcut_targets(lambda x, s, j: torch.full_like(x, 0.75), point, EDMConfig(shortcut_levels=16),
                                              torch.Generator().manual_seed(0))
    torch.testing.assert_close(est, point)


def test_shortcut_training_gives_samples_in_one_step_where_plain_training_gives_the_mean():
    """A toy of the sharp-dreams problem: data ±1 with equal odds. One EDM step from σ_max returns the
    conditional mean (≈ 0: a blob); trained with shortcut targets, the one-step sampler of the top class
    lands near ±1 (a sample), as the many-step sampler does."""
    from torch import nn

    cfg = EDMConfig(shortcut_levels=8, target="x", p_sigma_max=0.2)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.inp = nn.Embedding(4, 32), nn.Linear(2, 32)
            self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(32, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 1))

        def forward(self, x, s, j):
            pre = diffusion.precondition(s, cfg.sigma_data, cfg.target)
            return diffusion.denoise(self.mlp(self.inp(torch.stack([x * pre.c_in, pre.c_noise], -1)) + self.emb(j))[..., 0],
                                     x, pre)

    def one_step_samples(shortcut: bool) -> torch.Tensor:
        torch.manual_seed(0)
        net, g = Net(), torch.Generator().manual_seed(1)
        opt = torch.optim.Adam(net.parameters(), 3e-3)
        for _ in range(800):
            x0 = (torch.randint(0, 2, (256, 1), generator=g) * 2 - 1).float()
            sigma = diffusion.training_sigmas(x0.shape, cfg, g)
            x, j, target = x0 + sigma * torch.randn(x0.shape, generator=g), torch.zeros(x0.shape, dtype=torch.long), x0
            if shortcut:
                s_a, x_a, j_a, est = diffusion.shortcut_targets(net, x0[:64], cfg, g)
                sigma, x = torch.cat([s_a, sigma[64:]]), torch.cat([x_a, x[64:]])
                j, target = torch.cat([j_a, j[64:]]), torch.cat([est, x0[64:]])
            loss = (net(x, sigma, j) - target).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        top = diffusion.shortcut_class(1, 8) if shortcut else 0
        with torch.no_grad():
            return diffusion.sample(lambda x, s: net(x, torch.full_like(x, s), torch.full_like(x, top, dtype=torch.long)),
                                    torch.randn((2000, 1), generator=g), diffusion.karras_sigmas(1, cfg.sigma_min,
                                                                                                cfg.sigma_max, cfg.rho))

    def near_a_mode(x: torch.Tensor) -> float:
        return float(((x.abs() - 1).abs() < 0.25).float().mean())

    plain, short = one_step_samples(False), one_step_samples(True)
    assert near_a_mode(plain) < 0.05 and plain.abs().mean() < 0.2  # the mean: a blob
    assert near_a_mode(short) > 0.6  # samples
    assert 0.3 < float((short > 0).float().mean()) < 0.7  # of both modes
