"""Still frames for the docs: what the dream draws when the agent turns back (or walks back) to an object.

    python benchmarks/permanence_frames.py --checkpoints runs/miniworld/run/world_model.pt \\
        runs/miniworld_memory/run/world_model.pt --labels "no memory" "pose memory" \\
        --out docs/media/miniworld_permanence.png [--sampling-steps 1 2]

One row per permanence probe of the scenes ``--scenes`` of the default suite (seed 0) of ``--task`` (the
walk-by probes on a task where a wall hides the object, e.g. ``MiniWorld-WallWalk-v0``): the real
frame facing the object before it was hidden, then at the return frame the real view and each model's
dream (given the inputs ``worldsim bench-consistency`` gives it, same seeded noise), with the
probe's mask IoU printed under each dream. A checkpoint may be listed twice with different
``--sampling-steps`` (one value per checkpoint). Writes one PNG, atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from worldsim.evaluation import probes as P
from worldsim.evaluation.consistency import predictor_inputs, world_model_predictor
from worldsim.io import atomic_write_with
from worldsim.models.loading import load_world_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from before_after import per_checkpoint_steps  # noqa: E402


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoints", nargs="+", required=True)
    ap.add_argument("--labels", nargs="+", required=True)
    ap.add_argument("--sampling-steps", nargs="+", type=int, help="denoiser steps per frame, one per checkpoint")
    ap.add_argument("--scenes", nargs="+", type=int, default=[0], help="which scenes of the suite (0 = the first)")
    ap.add_argument("--task", default=P.SuiteConfig.task, help="the MiniWorld task the checkpoints were trained on")
    ap.add_argument("--scale", type=int, default=3)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    steps = per_checkpoint_steps(ap, args)
    models, ckpts = zip(*(load_world_model(c) for c in args.checkpoints))
    size = int(ckpts[0]["config"]["frame_size"][0])
    suite = P.make_suite(0, max(args.scenes) + 1, P.SuiteConfig.for_task(args.task, frame_size=size))
    kind = "walk_by" if suite.config.walk_by else "permanence"
    per = len(suite.probes) // (max(args.scenes) + 1)  # suite order: scene after scene, the same probes in each
    probes = [p for i in args.scenes for p in suite.probes[i * per : (i + 1) * per] if p.probe.kind == kind]
    predictors = [world_model_predictor(m, sampling_steps=n, history=suite.config.context_frames if m.cfg.memory_span else None)
                  for m, n in zip(models, steps)]
    s, pad, text = args.scale, 4, 14
    cols = ["real, facing it", "real at return"] + list(args.labels)
    tile = size * s
    img = Image.new("RGB", (len(cols) * (tile + pad) + 40, len(probes) * (tile + pad + text) + text + 4), "white")
    draw = ImageDraw.Draw(img)
    for c, name in enumerate(cols):
        draw.text((40 + c * (tile + pad), 2), name, fill="black")
    for r, played in enumerate(probes):
        (face, ret), = played.probe.returns
        color = np.asarray(played.probe.params["color"])
        real_ret = played.frames[played.origin + ret]
        y = text + 4 + r * (tile + pad + text)
        draw.text((2, y + tile // 2), f"k={played.probe.params['k']}", fill="black")
        tiles = [(played.frames[played.origin + face], ""), (real_ret, "")]
        truth = P.colour_mask(real_ret, color)
        for pred in predictors:
            ctx, ctx_actions, actions = predictor_inputs(played, pred.context_frames)
            dream = np.asarray(pred.predict(ctx, ctx_actions, actions))[ret - 1]
            tiles.append((dream, f"IoU {iou(P.colour_mask(dream, color), truth):.2f}"))
        for c, (frame, caption) in enumerate(tiles):
            x = 40 + c * (tile + pad)
            img.paste(Image.fromarray(frame).resize((tile, tile), Image.NEAREST), (x, y))
            draw.text((x, y + tile + 1), caption, fill="black")
    atomic_write_with(args.out, lambda tmp: img.save(tmp, format="PNG"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
