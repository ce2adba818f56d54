"""EDM diffusion maths (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based
Generative Models") as small pure functions.

The denoiser is ``D(x; σ) = c_skip(σ) x + c_out(σ) F(c_in(σ) x; c_noise(σ))`` (EDM eq. 7, Table 1),
trained with the loss of EDM eq. 8 rewritten as a unit-weighted regression of ``F`` on its
effective target. Sampling walks the Karras noise levels (eq. 5) with Euler steps (Algorithm 1
without the Heun correction) or Heun steps (Algorithm 1); DIAMOND shows a few EDM Euler steps
already give stable autoregressive game rollouts where DDPM needs many.

Shortcut models (Frans et al. 2024, "One Step Diffusion via Shortcut Models"; Dreamer 4's shortcut
forcing) make few steps yield what many steps would: the denoiser is also conditioned on the size of
the step it takes along a ladder of ``N = 2^k`` levels, and a step of size 2d is trained to land
where two steps of size d land (self-consistency), down to the plain denoiser's single Euler step.
Written in EDM's terms: a step of any size from σ_a to σ_b is an Euler step with a denoised estimate
x̂, so the two-step landing point is turned back into the x̂ a single step must return.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch


@dataclass
class EDMConfig:
    """Defaults are the ``small`` preset (configs/model/small.yaml)."""

    sigma_data: float = 1.0  # std of the (normalised) latents
    # Training noise: ln σ ~ N(p_mean, p_std²) (EDM Table 1 uses -1.2, 1.2), and a share p_sigma_max
    # at exactly sigma_max, where every sample starts: with few sampling steps the first denoiser
    # call makes nearly the whole prediction.
    p_mean: float = 0.0
    p_std: float = 1.5
    p_sigma_max: float = 0.5
    sigma_min: float = 2e-3
    # Sampling starts from pure noise at sigma_max, so training must never see a noisy input from
    # which the target can still be read at that level. EDM's 80 keeps the signal-to-noise ratio at
    # ~1e-4 even for the sparse, heavy-tailed frame-change targets (a moving sprite's latent cells
    # change by several standard deviations); at 5 the model learned to read those cells off the
    # noisy input in training and could not at sampling time (measured: 8% vs 23% of the change
    # variance explained after the same training on Boxing).
    sigma_max: float = 80.0
    rho: float = 7.0
    sampling_steps: int = 1  # denoiser evaluations per generated frame (Euler); see karras_sigmas
    # What the network predicts: "edm" (EDM Table 1: D = c_skip x + c_out F, so at low noise F
    # predicts the noise to remove) or "x" (x-prediction as Dreamer 4: c_skip = 0, D = σ_data F,
    # the clean target itself at every level, weighted uniformly; an imperfect F then errs towards
    # a blur instead of leaving the input's noise in the frame). The two agree at σ_max.
    target: str = "edm"
    solver: str = "euler"  # "euler" or "heun"
    # Shortcut training (module docstring): 0 = off, else the finest ladder N (a power of two >= 2):
    # the denoiser is also told its step size, and sampling_steps must then divide N (1, 2, 4, ... N).
    shortcut_levels: int = 0
    shortcut_share: float = 0.25  # share of each batch's windows trained on the two-half-steps target


class Preconditioning(NamedTuple):
    c_skip: torch.Tensor
    c_out: torch.Tensor
    c_in: torch.Tensor
    c_noise: torch.Tensor


TARGETS = ("edm", "x")


def precondition(sigma: torch.Tensor, sigma_data: float, target: str = "edm") -> Preconditioning:
    """EDM Table 1 (preconditioning column), for any shape of ``sigma``; with ``target="x"``
    c_skip = 0 and c_out = σ_data (x-prediction: F's target x0 / σ_data has unit variance)."""
    if target not in TARGETS:
        raise ValueError(f"edm.target must be one of {TARGETS}, got {target!r}.")
    s2, d2 = sigma**2, sigma_data**2
    if target == "x":
        return Preconditioning(torch.zeros_like(sigma), torch.full_like(sigma, sigma_data), 1.0 / (s2 + d2).sqrt(),
                               sigma.clamp_min(1e-12).log() / 4.0)
    c_skip = d2 / (s2 + d2)
    c_out = sigma * sigma_data / (s2 + d2).sqrt()
    c_in = 1.0 / (s2 + d2).sqrt()
    c_noise = sigma.clamp_min(1e-12).log() / 4.0
    return Preconditioning(c_skip, c_out, c_in, c_noise)


def training_sigmas(shape: tuple[int, ...], cfg: EDMConfig, generator: torch.Generator | None = None,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """ln σ ~ N(P_mean, P_std²) (EDM Table 1, "training" row); a share ``p_sigma_max`` at σ_max."""
    sigma = (torch.randn(shape, generator=generator, device=device) * cfg.p_std + cfg.p_mean).exp()
    if cfg.p_sigma_max > 0:
        at_max = torch.rand(shape, generator=generator, device=device) < cfg.p_sigma_max
        sigma = torch.where(at_max, torch.full_like(sigma, cfg.sigma_max), sigma)
    return sigma


def denoising_target(x0: torch.Tensor, noisy: torch.Tensor, pre: Preconditioning) -> torch.Tensor:
    """The target of ``F`` that makes EDM eq. 8 a unit-weighted MSE: (x0 - c_skip·x) / c_out."""
    return (x0 - pre.c_skip * noisy) / pre.c_out


def denoise(raw_output: torch.Tensor, noisy: torch.Tensor, pre: Preconditioning) -> torch.Tensor:
    """D(x; σ) = c_skip x + c_out F (EDM eq. 7)."""
    return pre.c_skip * noisy + pre.c_out * raw_output


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """The noise levels of a ``steps``-step sampler: ``steps`` levels from σ_max down, then 0.

    EDM eq. 5 spaces N levels σ_i = (σ_max^(1/ρ) + i/(N-1) (σ_min^(1/ρ) - σ_max^(1/ρ)))^ρ and ends
    at σ_N = 0. Taken as is with N = steps, the last evaluation happens at σ_min = 0.002, where the
    denoiser returns its input: with few steps one of them would be wasted ("2 steps" = 1 step).
    So the ramp is laid over ``steps + 1`` levels and its σ_min end is dropped: every one of the
    ``steps`` Euler steps is a denoiser evaluation that changes the sample, the last one jumping from
    the lowest kept level to the denoised estimate (σ = 0). 1 step: [σ_max, 0]; 2 steps with the
    defaults: [80, 2.52, 0]; 3: [80, 9.72, 0.47, 0]; 4: [80, 17.5, 2.52, 0.17, 0].
    """
    if steps < 1:
        raise ValueError(f"sampling needs at least one step, got {steps}.")
    ramp = torch.linspace(0, 1, steps + 1, device=device)[:-1]
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    sigmas[0] = sigma_max  # exactly: (σ_max^(1/ρ))^ρ rounds in float32
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def euler_step(x: torch.Tensor, denoised: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """One step of the probability-flow ODE dx/dσ = (x - D(x; σ)) / σ (EDM eq. 4, Algorithm 1 l.5-8)."""
    d = (x - denoised) / sigma
    return x + (sigma_next - sigma) * d


def sample(denoiser: Callable[[torch.Tensor, float], torch.Tensor], noise: torch.Tensor, sigmas: torch.Tensor,
           solver: str = "euler") -> torch.Tensor:
    """Integrate from ``noise`` (unit variance) down the ``sigmas`` ladder; returns x at σ = 0.

    ``denoiser(x, sigma)`` returns D(x; σ). With ``solver="heun"`` every step but the last gets
    the second-order correction of EDM Algorithm 1, lines 9-11.
    """
    if solver not in ("euler", "heun"):
        raise ValueError(f"solver must be 'euler' or 'heun', got {solver!r}.")
    sig = sigmas.tolist()
    x = noise * sig[0]  # 1. x_0 ~ N(0, σ_0² I)
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        denoised = denoiser(x, s)  # 2. D(x_i; σ_i)
        if s_next == 0.0:  # 3. last step: jump to the denoised estimate (Euler to σ = 0)
            x = denoised
            continue
        x_next = euler_step(x, denoised, s, s_next)  # 4. Euler step
        if solver == "heun":  # 5. Heun correction: average the slopes at both ends
            d = (x - denoised) / s
            d_next = (x_next - denoiser(x_next, s_next)) / s_next
            x_next = x + (s_next - s) * 0.5 * (d + d_next)
        x = x_next
    return x


def check_shortcut(cfg: EDMConfig) -> None:
    """Refuse shortcut settings that cannot work, saying what would."""
    n = cfg.shortcut_levels
    if n == 0:
        return
    if n < 2 or n & (n - 1):
        raise ValueError(f"edm.shortcut_levels must be 0 (off) or a power of two >= 2, got {n}.")
    if not 0.0 < cfg.shortcut_share < 1.0:
        raise ValueError(f"edm.shortcut_share must be in (0, 1) (the share of windows trained on shortcut "
                         f"targets), got {cfg.shortcut_share}.")
    if cfg.solver != "euler":
        raise ValueError(f"a shortcut model takes Euler steps of trained sizes: set edm.solver=euler "
                         f"(got {cfg.solver!r}).")
    shortcut_class(cfg.sampling_steps, n)


def shortcut_class(steps: int, levels: int) -> int:
    """The step-size class of a ``steps``-step sampler on a shortcut model of ``levels`` ladder levels:
    log2(levels / steps) (0 = the plain denoiser's step between neighbouring levels)."""
    if steps < 1 or levels % steps or (levels // steps) & (levels // steps - 1):
        valid = ", ".join(str(levels >> j) for j in range(levels.bit_length() - 1, -1, -1))
        raise ValueError(f"this is a shortcut model of {levels} levels: it samples with {valid} steps, "
                         f"not {steps}. Pass one of those as sampling_steps.")
    return (levels // steps).bit_length() - 1


def shortcut_draws(shape: tuple[int, ...], levels: int, generator: torch.Generator | None = None,
                   device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Training draws for shortcut targets: a step class j ~ U{1..k} (step size d = 2^j levels, k =
    log2 levels) and a start level i ~ U{0, d, 2d, ..., levels - d}: the levels a ``levels / d``-step
    sampler visits (karras_sigmas(s) is every (levels/s)-th level of karras_sigmas(levels))."""
    k = levels.bit_length() - 1
    j = torch.randint(1, k + 1, shape, generator=generator, device=device)
    d = 2**j
    i = (torch.rand(shape, generator=generator, device=device) * (levels // d)).long().clamp_max(levels // d - 1) * d
    return j, i


def shortcut_estimate(x_a: torch.Tensor, x_b: torch.Tensor, sigma_a: torch.Tensor, sigma_b: torch.Tensor) -> torch.Tensor:
    """The denoised estimate x̂ whose Euler step from (x_a, σ_a) lands on x_b at σ_b (σ_b = 0: x_b itself)."""
    return x_a - sigma_a * (x_b - x_a) / (sigma_b - sigma_a)


@torch.no_grad()
def shortcut_targets(denoiser: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor], x0: torch.Tensor,
                     cfg: EDMConfig, generator: torch.Generator | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Self-consistency targets for clean targets ``x0`` (m, t, ...): per (m, t) entry a step class j and
    start level σ_a (:func:`shortcut_draws`), the noisy input x_a = x0 + σ_a ε, and the estimate whose
    single step of class j lands where two steps of class j-1 of ``denoiser(x, σ (m, t), class (m, t))``
    -> D(x; σ) land. Returns σ_a (m, t), x_a, j (m, t) and the estimates (shaped as ``x0``)."""
    j, i = shortcut_draws(x0.shape[:2], cfg.shortcut_levels, generator, x0.device)
    ladder = karras_sigmas(cfg.shortcut_levels, cfg.sigma_min, cfg.sigma_max, cfg.rho, x0.device)
    half = 2 ** (j - 1)
    s_a, s_mid, s_b = (ladder[i + k * half] for k in range(3))
    pad = (1,) * (x0.dim() - 2)

    def b(s: torch.Tensor) -> torch.Tensor:  # (m, t) -> broadcast over a frame
        return s.view(*s.shape, *pad)

    x_a = x0 + b(s_a) * torch.randn(x0.shape, generator=generator, device=x0.device)
    x_mid = euler_step(x_a, denoiser(x_a, s_a, j - 1), b(s_a), b(s_mid))
    x_b = euler_step(x_mid, denoiser(x_mid, s_mid, j - 1), b(s_mid), b(s_b))  # at σ_b = 0: the estimate itself
    return s_a, x_a, j, shortcut_estimate(x_a, x_b, b(s_a), b(s_b))
