"""Markdown tables of an evaluation result: the one renderer used by the CLI, the run report and
``benchmarks/tables.py``, so a figure is printed the same way wherever it appears."""

from __future__ import annotations

from typing import Any

# (label, method, metric, format)
ROWS = (
    ("model, pooled PSNR", "model", "psnr", ".2f"),
    ("(median per-window PSNR)", "model", "psnr_median", ".2f"),
    ("repeat-last, pooled PSNR", "repeat_last", "psnr", ".2f"),
    ("model, motion PSNR", "model", "motion_psnr", ".2f"),
    ("repeat-last, motion PSNR", "repeat_last", "motion_psnr", ".2f"),
    ("model, SSIM", "model", "ssim", ".3f"),
    ("repeat-last, SSIM", "repeat_last", "ssim", ".3f"),
    ("model, LPIPS", "model", "lpips", ".3f"),
    ("repeat-last, LPIPS", "repeat_last", "lpips", ".3f"),
    ("model, Fréchet distance of LPIPS features", "model", "fd_lpips", ".3f"),
    ("repeat-last, Fréchet distance of LPIPS features", "repeat_last", "fd_lpips", ".3f"),
    ("model, sharpness ratio", "model", "sharpness", ".2f"),
    ("model, moving-region sharpness ratio", "model", "moving_sharpness", ".2f"),
    ("tokenizer floor, PSNR", "tokenizer_floor", "psnr", ".2f"),
    ("tokenizer floor, motion PSNR", "tokenizer_floor", "motion_psnr", ".2f"),
    ("tokenizer floor, LPIPS", "tokenizer_floor", "lpips", ".3f"),
)


def rollout_table(evaluation: dict[str, Any]) -> str:
    """Metrics per horizon (columns) of ``world_model_eval.json``; rows a result lacks are left out."""
    r = evaluation["rollouts"]
    hs = sorted(r["model"], key=int)
    out = ["| horizon | " + " | ".join(hs) + " |", "|---" * (len(hs) + 1) + "|"]
    for label, who, key, fmt in ROWS:
        values = [r.get(who, {}).get(h, {}).get(key) for h in hs]
        if all(v is None for v in values):
            continue
        out.append(f"| {label} | " + " | ".join("–" if v is None else format(v, fmt) for v in values) + " |")
    sprites = sorted({k for h in hs for k in r["model"][h] if k.startswith(("survival_", "placed_"))})
    for key in sprites:  # object survival (and placement), model and repeat-last
        prefix, name = key.split("_", 1)
        verb = "survives" if prefix == "survival" else "is placed"
        for label, who in (("model", "model"), ("repeat-last", "repeat_last"), ("tokenizer floor", "tokenizer_floor")):
            values = [r.get(who, {}).get(h, {}).get(key) for h in hs]
            out.append(f"| {label}, {name.replace('_', ' ')} {verb} | "
                       + " | ".join("–" if v is None else f"{v:.2f}" for v in values) + " |")
    out.append("| controllability (dB) | " + " | ".join(f"{r['controllability_db'][h]:+.2f}" for h in hs) + " |")
    return "\n".join(out)


def heads_summary(evaluation: dict[str, Any]) -> str:
    """One paragraph on the reward / episode-end heads."""
    hd = evaluation.get("heads")
    if not hd:
        return ""
    rec = {k: (f"{v:.2f}" if v is not None else "n/a") for k, v in hd["reward_recall_per_class"].items()}
    acc = hd.get("reward_accuracy")
    bal = hd.get("reward_balanced_accuracy")
    text = (f"Heads (teacher-forced, {hd['transitions']} held-out transitions): reward accuracy "
            f"{acc if acc is None else format(acc, '.3f')}, balanced accuracy "
            f"{bal if bal is None else format(bal, '.3f')} (recall −1 / 0 / +1: {rec['-1.0']} / {rec['0.0']} / "
            f"{rec['1.0']}; counts {hd['reward_class_counts']})")
    if hd.get("reward_balanced_accuracy_weighted") is not None:
        rw = {k: (f"{v:.2f}" if v is not None else "n/a") for k, v in hd["reward_recall_per_class_weighted"].items()}
        text += (f", deciding by the data posterior; {hd['reward_balanced_accuracy_weighted']:.3f} deciding with the "
                 f"training class weights (recall {rw['-1.0']} / {rw['0.0']} / {rw['1.0']})")
    within = hd.get("end_within", 1)
    target = f" of 'ends within {within} steps'" if within > 1 else ""
    text += (f"; episode end{target} precision {hd['end_precision']:.2f}, "
            f"recall {hd['end_recall']:.2f}, F1 {hd['end_f1']:.2f} ({hd['episode_ends']} ends).")
    if "rollout_reward_accuracy" in evaluation.get("rollouts", {}):
        text += f" Reward accuracy inside the rollouts: {evaluation['rollouts']['rollout_reward_accuracy']:.3f}."
    by_sign = evaluation.get("rollouts", {}).get("rollout_reward_by_real_sign")
    if by_sign:
        err = evaluation["rollouts"]["rollout_return_error"]
        fmt = {k: ("n/a" if v is None else f"{v:+.2f}") for k, v in by_sign.items()}
        text += (f" Inside the rollouts the dream pays {fmt['-1.0']} / {fmt['0.0']} / {fmt['1.0']} on the steps where "
                 f"the real game paid −1 / 0 / +1")
        early = evaluation["rollouts"].get("rollout_reward_by_real_sign_early")
        if early:
            fe = {k: ("n/a" if v is None else f"{v:+.2f}") for k, v in early.items()}
            text += f" ({fe['-1.0']} / {fe['0.0']} / {fe['1.0']} over the first {evaluation['rollouts']['rollout_early_steps']} steps)"
        text += f"; {err['horizon']}-step return error {err['mean']:+.2f} (mean |error| {err['mean_abs']:.2f})."
    text += ends_text(evaluation.get("rollouts", {}))
    signal = evaluation.get("rollouts", {}).get("reward_signal")
    said = reward_signal_text(signal)
    if said:
        text += f" **{said[0].upper()}{said[1:]}**" if signal["gaps"] else f" {said[0].upper()}{said[1:]}"
    return text


def ends_text(rollouts: dict[str, Any]) -> str:
    """One sentence on episode ends inside the rollouts (empty for results without them)."""
    ends, false = rollouts.get("ends"), rollouts.get("false_end_rate")
    text = ""
    if ends:
        hs = list(ends["by_horizon"])

        def col(key: str) -> str:
            return " / ".join(f"{ends['by_horizon'][h][key]:.2f}" for h in hs)

        text += (f" Inside the rollouts a life ends where the game's does (within {ends['tolerance']} steps) in "
                 f"{col('ends_on_time')} of {ends['episodes']} held-out ends dreamt from {' / '.join(hs)} steps "
                 f"before them (end probability at the game's end {col('end_prob_at_game_end')}; "
                 f"ended earlier {col('ended_before')})")
    if false and false["rate"] is not None:
        text += ("; the" if text else " The") + (f" dream ends in {false['rate']:.2f} of {false['windows']} windows where "
                                                f"the game goes on for {false['horizon']} steps (end probability "
                                                f"{false['mean_end_prob']:.3f} per step there)")
    return text + "." if text else ""


def reward_signal_text(signal: dict[str, Any] | None) -> str | None:
    """What to tell a user about an evaluation's ``reward_signal`` verdict; None when the reward tracks."""
    if not signal or signal["tracks"]:
        return None
    if not signal["gaps"]:
        return (f"too few rewarded steps in these windows (fewer than {signal['min_events']} of a sign) to tell "
                "whether the dream's reward tracks the game's; evaluate more windows (evaluate.num_windows).")
    gaps = ", ".join(f"{k} {v:+.2f}" for k, v in signal["gaps"].items())
    return (f"the dream's reward does not track the game's (gaps {gaps}; tracking needs >= {signal['min_gap']}): "
            "it does not pay more where the game paid more, so an agent trained in this dream learns its noise, "
            "not the game. Its frames have to keep what the game pays for (the object survival and LPIPS rows) "
            "before its rewards can follow the game.")


def evaluation_markdown(evaluation: dict[str, Any]) -> str:
    """Heading line, table and heads paragraph of one evaluation."""
    r = evaluation["rollouts"]
    head = (f"{r['num_windows']} held-out windows, {evaluation['context_frames']} real context frames, "
            f"{evaluation['sampling_steps']} sampling step(s) per frame ({evaluation.get('solver', 'euler')}), "
            f"{evaluation.get('precision', 'fp32')}.")
    return "\n".join([head, "", rollout_table(evaluation), "", heads_summary(evaluation)]).rstrip() + "\n"
