"""The end-of-run report: every figure a run produced, gathered into ``report.md``, ``report.html``
(one static page, :mod:`worldsim.evaluation.html`) and ``report.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from worldsim.evaluation.html import report_html
from worldsim.evaluation.plots import plot_training_curves
from worldsim.evaluation.tables import evaluation_markdown
from worldsim.io import atomic_write_json, atomic_write_text
from worldsim.models.checkpoint import load_checkpoint


def _json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _ckpt_metrics(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    ck = load_checkpoint(path)
    return {"step": ck.get("step"), **ck.get("metrics", {})}


def write_report(run_dir: str | Path, config: dict[str, Any]) -> Path:
    run_dir = Path(run_dir)
    report = {
        "config": config,
        "tokenizer": _ckpt_metrics(run_dir / "tokenizer.pt"),
        "world_model": _ckpt_metrics(run_dir / "world_model.pt"),
        "evaluation": _json(run_dir / "eval" / "world_model_eval.json"),
        "agent": _json(run_dir / "agent_eval.json"),
        "timings_s": _json(run_dir / "timings.json"),
    }
    atomic_write_json(run_dir / "report.json", report)
    plot_training_curves(run_dir)

    def image(alt: str, rel: str) -> list[str]:  # only files that exist: the page must not link missing ones
        return [f"![{alt}]({rel})", ""] if (run_dir / rel).exists() else []

    lines = [f"# worldsim run: {config.get('env', {}).get('tag', '?')} / {config.get('model', {}).get('name', '?')}", ""]
    tok = report["tokenizer"]
    if tok:
        lines += ["## Tokenizer", f"held-out reconstruction PSNR **{tok.get('psnr', float('nan')):.2f} dB**, motion PSNR "
                  f"**{tok.get('motion_psnr', float('nan')):.2f} dB**, latent {tok.get('latent_shape')}, "
                  f"{tok.get('step')} steps in {tok.get('train_seconds', 0) / 60:.1f} min.", "",
                  *image("tokenizer training curves", "tokenizer/training_curves.png")]
    wm = report["world_model"]
    if wm:
        lines += ["## World model", f"{wm.get('step')} steps in {wm.get('train_seconds', 0) / 60:.1f} min "
                  f"({wm.get('samples_per_s', 0):.1f} windows/s).", "",
                  *image("world-model training curves", "world_model/training_curves.png")]
    ev = report["evaluation"]
    if ev:
        lines += ["## Rollouts on held-out play", "", *evaluation_markdown(ev).splitlines(), "",
                  *image("rollout metrics", "eval/world_model_eval.png"), *image("real | dream | error", "dream.gif")]
        if (run_dir / "dream.mp4").exists():
            lines += ["Video: `dream.mp4` (real | dream | per-pixel error; the dream's border turns red once its "
                      "PSNR falls below 20 dB).", ""]
    ag = report["agent"]
    if ag:
        lines += ["## Agent trained in the dream", f"PPO, {ag['dream_steps']} dream steps "
                  f"({ag['dream_steps_per_s']:.0f} steps/s including learning). Real game: "
                  f"**{ag['real']['mean_return']:.1f} ± {ag['real']['std_return']:.1f}** over {ag['real']['episodes']} "
                  f"episodes; random policy {ag['random_policy_real']['mean_return']:.1f} ± "
                  f"{ag['random_policy_real']['std_return']:.1f}. Mean dream episode return: {ag['dream_mean_episode_return']}.", ""]
    if report["timings_s"]:
        lines += ["## Time", " · ".join(f"{k} {v / 60:.1f} min" for k, v in report["timings_s"].items()), ""]
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(lines))
    atomic_write_text(run_dir / "report.html", report_html(lines[0].lstrip("# "), lines, run_dir, config))
    return path
