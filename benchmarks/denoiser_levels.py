"""How good is a world model's denoiser at each level of a sampler's noise ladder?

Teacher-forced on held-out windows (clean context, every target frame noised to one level σ):
the squared error of the denoised estimate D(x; σ) of the frame change against the truth, per
level of a ``--levels``-level Karras ladder, beside the share of training draws near that level
(ln σ within half a ladder gap; the model's own ``p_mean`` / ``p_std`` / ``p_sigma_max``). A
shortcut model is also scored with each step class at σ_max: class j's one-step estimate from
pure noise (the ``levels / 2^j``-step sampler's first step), to see which classes learned a
usable estimate: the shortcut classes are built on class 0 at every ladder level, and class j on
class j-1, so one bad level spoils every class above it.

    python benchmarks/denoiser_levels.py --checkpoints runs/a/world_model.pt runs/b/world_model.pt \\
        --labels xs xs_sc16 --data data/boxing_heldout --out benchmarks/results/denoiser_levels_boxing.json
"""

from __future__ import annotations

import argparse
import math

import torch

from worldsim import diffusion
from worldsim.data.dataset import WindowDataset
from worldsim.data.store import EpisodeStore
from worldsim.io import atomic_write_json
from worldsim.models.loading import load_world_model


def normal_cdf(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoints", nargs="+", required=True)
    ap.add_argument("--labels", nargs="+", required=True)
    ap.add_argument("--data", required=True, help="a held-out episode store of the same env")
    ap.add_argument("--levels", type=int, default=16)
    ap.add_argument("--windows", type=int, default=64)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if len(args.labels) != len(args.checkpoints):
        ap.error("give one label per checkpoint")
    result = {"what": "teacher-forced denoising error of the frame change per noise level, held-out windows",
              "levels": args.levels, "windows": args.windows, "models": {},
              "command": "python benchmarks/denoiser_levels.py " + " ".join(
                  f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                  for k, v in vars(args).items())}
    for label, path in zip(args.labels, args.checkpoints):
        model, _ = load_world_model(path)
        edm, t = model.cfg.edm, model.cfg.dit.context_frames + 1
        data = WindowDataset(EpisodeStore.open(args.data), t, "all")
        batch = data.gather(data.distinct_windows(args.windows, torch.Generator().manual_seed(0)))
        z = model.encode(batch.frames)  # (b, t, c, h, w)
        x0 = (z[:, 1:] - z[:, :-1]) / model.delta_std
        b = z.shape[0]
        pre_c = diffusion.precondition(torch.full((b, t), edm.sigma_min), edm.sigma_data)
        clean_in = z * pre_c.c_in[..., None, None, None]
        prev = model.prev_actions(batch.actions)
        gen = torch.Generator().manual_seed(1)
        noise = torch.randn(x0.shape, generator=gen)

        def estimate(sigma: float, step: int | None) -> float:
            s = torch.full((b, t - 1), sigma)
            pre = diffusion.precondition(s, edm.sigma_data, edm.target)
            pb = diffusion.Preconditioning(*(v[..., None, None, None] for v in pre))
            noisy = x0 + sigma * noise
            classes = None if step is None else torch.full((b, t - 1), step, dtype=torch.long)
            raw, _ = model.dit(clean_in, pre_c.c_noise, noisy * pb.c_in, pre.c_noise, prev, None, classes)
            return float(((diffusion.denoise(raw.float(), noisy, pb) - x0) ** 2).mean())

        ladder = diffusion.karras_sigmas(args.levels, edm.sigma_min, edm.sigma_max, edm.rho)[:-1].tolist()
        gap = (math.log(ladder[0]) - math.log(ladder[1])) / 2
        shortcut = edm.shortcut_levels > 0
        rows = []
        for i, sigma in enumerate(ladder):
            lo, hi = math.log(sigma) - gap, math.log(sigma) + gap
            share = (1 - edm.p_sigma_max) * (normal_cdf((hi - edm.p_mean) / edm.p_std) - normal_cdf((lo - edm.p_mean) / edm.p_std))
            if i == 0:
                share += edm.p_sigma_max
            rows.append({"level": i, "sigma": sigma, "training_share_near": share,
                         "mse_class0": estimate(sigma, 0 if shortcut else None)})
        entry = {"checkpoint": path, "variance_of_truth": float(x0.var()), "by_level": rows}
        if shortcut:
            entry["mse_at_sigma_max_by_class"] = {str(j): estimate(edm.sigma_max, j)
                                                  for j in range(edm.shortcut_levels.bit_length())}
        result["models"][label] = entry
        print(label, entry, flush=True)
    atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
