"""Training curves from a run's ``metrics.jsonl`` files, saved as PNG beside them (regenerable from
the JSONL alone): ``worldsim report`` and ``worldsim run`` draw them for the page."""

from __future__ import annotations

import json
from pathlib import Path

from worldsim.io import atomic_write_with

CURVES = {  # metrics file (relative to the run) -> scalars to draw, one panel each
    "tokenizer/metrics.jsonl": ("tok/loss", "tok/mse", "tok/motion_mse"),
    "world_model/metrics.jsonl": ("wm/diffusion_loss", "wm/reward_loss", "wm/end_loss"),
    "agent/metrics.jsonl": ("rl/episode_return", "rl/episode_length"),  # PPO in the dream, per rollout
    "model_free/agent/metrics.jsonl": ("rl/episode_return", "rl/episode_length"),  # PPO on the real game
    "metrics.jsonl": ("real/episode_return", "rl/dream_episode_return", "tok/val_psnr"),  # worldsim loop, per iteration
}


def read_jsonl(path: Path) -> list[dict[str, float]]:
    """Rows of a metrics file; a torn last line (an interrupted write) is skipped."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def plot_training_curves(run_dir: str | Path) -> list[Path]:
    """One PNG per metrics file present: ``<stage>/training_curves.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for rel, keys in CURVES.items():
        path = Path(run_dir) / rel
        if not path.exists():
            continue
        by_step: dict[int, dict[str, float]] = {}
        for r in read_jsonl(path):  # rows of one step merge (train and held-out scalars); a resumed step keeps its last values
            if "step" in r:
                by_step.setdefault(int(r["step"]), {}).update(r)
        steps = sorted(by_step)
        keys = [k for k in keys if any(k in by_step[s] for s in steps)]
        if not steps or not keys:
            continue
        fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2), squeeze=False)
        for ax, key in zip(axes[0], keys):
            xs = [s for s in steps if key in by_step[s]]
            ax.plot(xs, [by_step[s][key] for s in xs])
            ax.set_title(key, fontsize=9)
            ax.set_xlabel("real steps" if rel == "metrics.jsonl" else "step")
            ax.set_yscale("log" if all(by_step[s][key] > 0 for s in xs) else "linear")
            ax.grid(alpha=0.3)
        fig.tight_layout()
        out = path.with_name("training_curves.png")
        atomic_write_with(out, lambda tmp: fig.savefig(tmp, dpi=100))
        plt.close(fig)
        written.append(out)
    return written
