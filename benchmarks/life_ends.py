"""Why lives do not end in a Breakout dream: what ends a life in the game, and what the dream makes of it.

    python benchmarks/life_ends.py --run runs/atari100k_wm4k_patch/breakout_seed1 \
        --out benchmarks/results/life_ends_breakout.json --frames docs/media/breakout_dream_lives.png

For the held-out episodes of an Atari 100k run's store (``val`` split; under the protocol an episode
ends at a lost life): how many agent steps before the end the ball was last seen in the playfield
(Breakout's ball sprite, :mod:`worldsim.evaluation.sprites`; the frame that ends a life is the one
where the lives digit drops, and a new ball may be served in it), against the world model's
``context_frames``. And, for the first ``--show`` ends, one frame of the dream started from the
``C`` real frames before the end under the recorded action: the end head's probability on the dream's
frame and on the real one (teacher-forced), and an image of [last real frame before the end |
the real end frame | the dream's frame | |real - dream|] per end.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np
import torch

from worldsim.data.dataset import WindowDataset
from worldsim.data.store import EpisodeStore
from worldsim.evaluation.sprites import SPRITES, sprite_pixels
from worldsim.io import atomic_write_json, atomic_write_with
from worldsim.models.loading import load_world_model


def steps_since_ball(store: EpisodeStore) -> list[int]:
    """Per ended held-out episode: agent steps from the last frame before the end with a ball to the end
    frame (the end frame itself counts only when no earlier frame of the last 20 shows the ball)."""
    ball = SPRITES["breakout"][0]
    gaps = []
    for _, ep in store.iter_episodes(store.split_names("val", 0.1)):
        if not len(ep) or not ep.terminated[-1]:
            continue
        seen = (sprite_pixels(torch.from_numpy(ep.frames[:-1]).permute(0, 3, 1, 2), ball) > 0).numpy()  # before the end
        visible = np.nonzero(seen)[0]
        gaps.append(int(len(ep) - visible[-1]) if len(visible) else -1)  # frame len(ep) is the end frame
    return gaps


@torch.no_grad()
def dream_at_ends(run: Path, show: int, seed: int) -> tuple[dict, np.ndarray]:
    model, _ = load_world_model(run / "world_model.pt")
    C = model.cfg.dit.context_frames
    data = WindowDataset(EpisodeStore.open(run / "data"), C + 1, "val", 0.1)
    ends = data.ended_episode_frames()[:show]
    batch = data.gather(data.windows_ending_at(ends, C + 1))
    latents = model.encode(batch.frames)
    prev = model.prev_actions(batch.actions[:, : C - 1])
    out = model.rollout(latents[:, :C], prev, batch.actions[:, C - 1 :], torch.Generator().manual_seed(seed))
    teacher = model.append(model.start_rollout(latents[:, :C], prev), latents[:, C], batch.actions[:, C - 1])
    dream = model.decode(out.latents[:, 0])
    real = batch.frames[:, C]
    diff = (real.float() - dream.float()).abs().to(torch.uint8)
    panels = torch.cat([batch.frames[:, C - 1], real, dream, diff], dim=3)  # (n, 3, h, 4w)
    image = panels.permute(0, 2, 3, 1).reshape(-1, panels.shape[3], 3).numpy()
    figures = {"context_frames": C, "ends_shown": len(ends),
               "end_prob_dream_frame": out.end_probs[:, 0].float().tolist(),
               "end_prob_real_frame": teacher.end.float().tolist()}
    return figures, image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a Breakout run directory of benchmarks/atari100k.py")
    parser.add_argument("--out", required=True)
    parser.add_argument("--frames", help="PNG of real | dream frames at the ends (4x nearest-neighbour)")
    parser.add_argument("--show", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    run = Path(args.run)
    gaps = steps_since_ball(EpisodeStore.open(run / "data"))
    if not gaps:
        raise SystemExit(f"{run / 'data'} holds no held-out episode that ends: give a Breakout run of the Atari 100k loop.")
    figures, image = dream_at_ends(run, args.show, args.seed)
    counts = collections.Counter(gaps)
    result = {"what": __doc__.split("\n\n")[2].replace("\n", " "), "command": "python " + " ".join(sys.argv),
              "run": str(run), "ends": len(gaps),
              "steps_from_last_ball_to_end": {str(k): counts[k] for k in sorted(counts)},
              "median_steps_from_last_ball_to_end": float(np.median([g for g in gaps if g >= 0])), **figures}
    atomic_write_json(Path(args.out), result)
    print(f"{len(gaps)} ends; steps from the last ball to the end: {result['steps_from_last_ball_to_end']} "
          f"(context {figures['context_frames']} frames); end probability on the dream's frame "
          f"{np.mean(figures['end_prob_dream_frame']):.4f}, on the real frame {np.mean(figures['end_prob_real_frame']):.4f}")
    if args.frames:
        from PIL import Image

        big = Image.fromarray(image).resize((image.shape[1] * 4, image.shape[0] * 4), Image.NEAREST)
        atomic_write_with(Path(args.frames), lambda tmp: big.save(tmp, format="PNG", optimize=True))


if __name__ == "__main__":
    main()
