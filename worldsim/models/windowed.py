"""The uncached windowed rollout: each generated frame sees only the last ``m`` frames, through the
teacher-forced training pass (:meth:`worldsim.models.world_model.WorldModel.rollout_latents`, the
"context cut to k frames" baseline of the consistency benchmark). Equal to the cached rollout at
m = context_frames (tests check it), so the two share every noise draw.
"""

from __future__ import annotations

import torch

from worldsim import diffusion
from worldsim.models.memory import Motion, PoseMemory


def windowed_rollout(model, context: torch.Tensor, context_prev_actions: torch.Tensor, actions: torch.Tensor,
                     generator: torch.Generator | None, sampling_steps: int | None, m: int) -> torch.Tensor:
    """Generated latents (b, T, c, h, w) of ``model`` (a WorldModel) from context latents (b, C, c, h, w),
    the actions that led to them (b, C) and ``actions`` (b, T), each frame seeing its last ``m`` frames."""
    edm = model.cfg.edm
    b, dev = actions.shape[0], context.device
    steps = edm.sampling_steps if sampling_steps is None else sampling_steps
    sigmas = diffusion.karras_sigmas(steps, edm.sigma_min, edm.sigma_max, edm.rho)
    frames, prev = context[:, -m:].float(), context_prev_actions[:, -m:]
    step = model._step_classes(steps, (b, m), dev)
    memory = None
    if model.cfg.memory_span:  # the memory is not cut: it holds the whole context, as in the cached rollout
        memory = PoseMemory(b, model.cfg.memory_span, tuple(context.shape[2:]), Motion.from_table(model.motion), dev)
        memory.reset(context.float(), context_prev_actions)
    out = []
    for k in range(actions.shape[1]):
        a = actions[:, k]
        mem = None
        if memory is not None:  # every noisy slot gets it; only the last one's output is used
            ml, mf = model.memory_input(*memory.query(a))
            mem = (ml[:, None].expand(-1, m, -1, -1, -1), mf[:, None].expand(-1, m, -1))
        clean = torch.cat([frames, frames[:, -1:]], dim=1)  # (b, m+1): the last slot is never attended to
        x_clean, c_clean = model._context_input(clean)
        acts = torch.cat([prev, a[:, None]], dim=1)  # (b, m+1): the action that led to each frame

        def denoiser(x: torch.Tensor, sigma: float) -> torch.Tensor:
            pre = diffusion.precondition(torch.full((b, m), sigma, device=dev), edm.sigma_data, edm.target)
            noisy = torch.zeros((b, m, *x.shape[1:]), device=dev)
            noisy[:, -1] = x  # only the frame after the window matters; the others are ignored
            raw, _ = model.dit(x_clean, c_clean, noisy * pre.c_in[..., None, None, None], pre.c_noise, acts, mem, step)
            last = diffusion.Preconditioning(*(v[:, -1, None, None, None] for v in pre))
            return diffusion.denoise(raw[:, -1], x, last)

        noise = torch.randn((b, model.cfg.dit.latent_channels, *model.latent_hw), generator=generator, device=dev)
        z = frames[:, -1] + diffusion.sample(denoiser, noise.float(), sigmas, edm.solver).float() * model.delta_std
        out.append(z)
        if memory is not None:
            memory.append(z, a)
        frames = torch.cat([frames, z[:, None]], dim=1)[:, -m:]
        prev = torch.cat([prev, a[:, None]], dim=1)[:, -m:]
    return torch.stack(out, dim=1)
