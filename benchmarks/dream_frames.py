"""Still frames for the docs: real | dream at horizons 1, 4, 16, 64 on held-out windows.

    python benchmarks/dream_frames.py --checkpoint runs/boxing/small/world_model.pt \
        --data data/boxing_heldout --out docs/media/boxing_horizons.png [--sampling-steps N] [--split val]

Same rollout routine and held-out windows as ``worldsim evaluate-world-model`` (seeded); writes
one PNG, atomically.
"""

from __future__ import annotations

import argparse

from PIL import Image

from worldsim.evaluation.video import horizon_strip
from worldsim.io import atomic_write_with
from worldsim.models.loading import load_world_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True, help="episode store: a held-out one (--split all) or a run's store (--split val)")
    ap.add_argument("--split", default="all", choices=["all", "val"])
    ap.add_argument("--horizons", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--rows", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sampling-steps", type=int, default=None)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    model, _ = load_world_model(args.checkpoint)
    img = horizon_strip(model, args.data, tuple(args.horizons), args.rows, split=args.split, seed=args.seed,
                        sampling_steps=args.sampling_steps)
    atomic_write_with(args.out, lambda tmp: Image.fromarray(img).save(tmp, format="PNG"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
