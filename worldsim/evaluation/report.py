"""The end-of-run report: every figure a run produced, gathered into ``report.md``, ``report.html``
(one static page, :mod:`worldsim.evaluation.html`) and ``report.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from worldsim.evaluation.html import report_html
from worldsim.evaluation.plots import plot_training_curves
from worldsim.evaluation.tables import evaluation_markdown
from worldsim.evaluation.world_model_eval import plot_eval
from worldsim.io import atomic_write_json, atomic_write_text
from worldsim.models.checkpoint import load_checkpoint


def _json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _ckpt_metrics(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    ck = load_checkpoint(path)
    return {"step": ck.get("step"), **ck.get("metrics", {})}


def dream_line(dream: dict[str, Any], gap: float) -> str:
    """The dream agent's return in its own dream and, when measured, a random policy's in the same dreams."""
    line = (f"The dream agent in its own dream: {dream['mean_return']:.2f} over {dream['episodes']} episodes of "
            f"{dream['horizon']} steps (dream − real: {gap:+.2f})")
    if "random" in dream:
        lo, hi = dream["agent_minus_random"]["ci95"]
        line += (f"; a random policy in the same dreams: {dream['random']['mean_return']:.2f} (agent − random "
                 f"{dream['agent_minus_random']['mean']:+.2f} [{lo:+.2f}, {hi:+.2f}]: what the dream pays for the agent's play)")
    return line + "."


def real_game_table(ev: dict[str, Any]) -> list[str]:
    """Dream agent, random and model-free on the same real episodes (evaluation.json)."""
    d = ev["dream_agent"]
    rows = [("dream agent (PPO in the dream)", d["real"], d.get("hns"))]
    if "random" in d:
        rows.append(("random policy", d["random"], d["random"].get("hns")))
    if "model_free" in ev:
        rows.append((f"model-free (PPO on the real game, {ev['model_free']['train']['real_steps']} steps)",
                     ev["model_free"]["real"], ev["model_free"].get("hns")))
    out = [f"Protocol `{d['protocol']}`, {ev['episodes']} episodes per policy with the same reset seeds, after "
           f"{ev['real_steps']} real steps of play in the store. Mean return with a bootstrap 95% interval.", "",
           "| policy | mean return | 95% interval | HNS |", "|---|---|---|---|"]
    for name, r, hns in rows:
        out.append(f"| {name} | {r['mean_return']:.2f} | [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}] | "
                   f"{'—' if not hns else format(hns['mean'], '.3f')} |")
    if "dream" in d:
        out += ["", dream_line(d["dream"], d["dream_to_real_gap"])]
    if d.get("hns_note"):
        out += ["", d["hns_note"]]
    return out


def loop_table(state: dict[str, Any]) -> list[str]:
    """One row per completed iteration of ``worldsim loop`` (loop.json)."""
    out = ["| iteration | real steps | return per stored episode | dream return | tokenizer PSNR | minutes |",
           "|---|---|---|---|---|---|"]
    for r in state["iterations"]:
        s = r["scalars"]

        def f(key: str, fmt: str = ".2f") -> str:
            return format(s[key], fmt) if key in s else "—"

        out.append(f"| {r['iteration']} | {r['real_steps']} | {f('real/episode_return')} | {f('rl/dream_episode_return')} | "
                   f"{f('tok/val_psnr')} | {sum(r['seconds'].values()) / 60:.1f} |")
    return out


def write_report(run_dir: str | Path, config: dict[str, Any]) -> Path:
    run_dir = Path(run_dir)
    report = {
        "config": config,
        "tokenizer": _ckpt_metrics(run_dir / "tokenizer.pt"),
        "world_model": _ckpt_metrics(run_dir / "world_model.pt"),
        "evaluation": _json(run_dir / "eval" / "world_model_eval.json"),
        "agent": _json(run_dir / "agent_eval.json"),
        "real_game": _json(run_dir / "evaluation.json"),
        "loop": _json(run_dir / "loop.json"),
        "timings_s": _json(run_dir / "timings.json"),
    }
    atomic_write_json(run_dir / "report.json", report)
    plot_training_curves(run_dir)  # curves grow with the run: redrawn from their JSONL every time
    eval_png = run_dir / "eval" / "world_model_eval.png"  # written with its JSON; redrawn from it if missing
    if report["evaluation"] and not eval_png.exists():
        plot_eval(report["evaluation"], eval_png)

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
        text = (f"PPO, {ag['dream_steps']} dream steps ({ag['dream_steps_per_s']:.0f} steps/s including learning); "
                f"mean dream episode return while training: {ag['dream_mean_episode_return']}.")
        if "real" in ag:
            text += (f" Real game: **{ag['real']['mean_return']:.1f} ± {ag['real']['std_return']:.1f}** over "
                     f"{ag['real']['episodes']} episodes; random policy {ag['random_policy_real']['mean_return']:.1f} ± "
                     f"{ag['random_policy_real']['std_return']:.1f}.")
        lines += ["## Agent trained in the dream", text, "", *image("agent return in the dream", "agent/training_curves.png")]
    if report["loop"]:
        lines += ["## The loop", *loop_table(report["loop"]), "", *image("the loop per iteration", "training_curves.png")]
    if report["real_game"]:
        lines += ["## On the real game", *real_game_table(report["real_game"]), "",
                  *image("model-free PPO return on the real game (training)", "model_free/agent/training_curves.png")]
    if report["timings_s"]:
        lines += ["## Time", " · ".join(f"{k} {v / 60:.1f} min" for k, v in report["timings_s"].items()), ""]
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(lines))
    atomic_write_text(run_dir / "report.html", report_html(lines[0].lstrip("# "), lines, run_dir, config))
    return path
