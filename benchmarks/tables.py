"""Print the markdown tables of the docs from the benchmark JSON files, so the figures in the docs
are copied by a program, not by hand.

    python benchmarks/tables.py benchmarks/results/world_model_boxing.json
    python benchmarks/tables.py benchmarks/results/dream_throughput.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def world_model_table(d: dict) -> str:
    r = d["evaluation"]["rollouts"]
    hs = sorted(r["model"], key=int)
    rows = [
        ("model, pooled PSNR", "model", "psnr", 2), ("(median per-window PSNR)", "model", "psnr_median", 2),
        ("repeat-last, pooled PSNR", "repeat_last", "psnr", 2), ("model, motion PSNR", "model", "motion_psnr", 2),
        ("repeat-last, motion PSNR", "repeat_last", "motion_psnr", 2), ("model, SSIM", "model", "ssim", 3),
        ("repeat-last, SSIM", "repeat_last", "ssim", 3), ("tokenizer floor, PSNR", "tokenizer_floor", "psnr", 2),
        ("tokenizer floor, motion PSNR", "tokenizer_floor", "motion_psnr", 2),
    ]
    out = ["| horizon | " + " | ".join(hs) + " |", "|---" * (len(hs) + 1) + "|"]
    for label, who, key, nd in rows:
        out.append(f"| {label} | " + " | ".join(f"{r[who][h][key]:.{nd}f}" for h in hs) + " |")
    out.append("| controllability (dB) | " + " | ".join(f"{r['controllability_db'][h]:+.2f}" for h in hs) + " |")
    hd = d["evaluation"].get("heads", {})
    tok, wm = d["tokenizer"], d["world_model"]
    out.append("")
    out.append(f"CPU training: tokenizer {tok.get('train_seconds', 0) / 60:.1f} min + world model "
               f"{wm.get('train_seconds', 0) / 60:.1f} min ({wm.get('steps')} steps) = {d['cpu_training_minutes']:.1f} min; "
               f"tokenizer held-out PSNR {tok.get('psnr', 0):.2f} dB, motion PSNR {tok.get('motion_psnr', 0):.2f} dB.")
    if hd:
        rec = {k: (f"{v:.2f}" if v is not None else "n/a") for k, v in hd["reward_recall_per_class"].items()}
        out.append(f"Heads (teacher-forced, {hd['transitions']} held-out transitions): reward accuracy "
                   f"{hd['reward_accuracy']:.3f}, balanced accuracy {hd.get('reward_balanced_accuracy', float('nan')):.3f} "
                   f"(recall −1 / 0 / +1: {rec['-1.0']} / {rec['0.0']} / {rec['1.0']}; counts "
                   f"{hd['reward_class_counts']}); episode end precision {hd['end_precision']:.2f}, recall "
                   f"{hd['end_recall']:.2f}, F1 {hd['end_f1']:.2f} ({hd['episode_ends']} ends). "
                   f"Reward accuracy inside the rollouts: {r['rollout_reward_accuracy']:.3f}.")
    return "\n".join(out)


def dream_table(d: dict) -> str:
    out = [f"matmul peak: fp32 {d['matmul_gflops']['fp32']:.0f} GFLOP/s, bf16 {d['matmul_gflops']['bf16']:.0f} GFLOP/s; "
           f"real ALE Boxing {d['ale_boxing_steps_per_s_1_core']:.0f} steps/s on one core.", ""]
    out.append("| preset | batch | precision | latent, cache | latent, no cache | pixels, cache | pixels, no cache "
               "| GFLOP/step (latent / pixels) | achieved GFLOP/s (latent) |")
    out.append("|---" * 9 + "|")
    for name, entry in d["presets"].items():
        cells: dict = {}
        for run in entry["runs"]:
            cells[(run["batch"], run.get("device", "cpu") + " " + run["precision"], run["obs"], run["cache"])] = run
        for b, p in sorted({(k[0], k[1]) for k in cells}):
            def sps(obs, cache):
                run = cells.get((b, p, obs, cache))
                return f"{run['steps_per_s']:,.0f}" if run else "–"
            lat, pix = cells.get((b, p, "latent", True)), cells.get((b, p, "pixels", True))
            flops = f"{lat['gflop_per_step']:.3f} / {pix['gflop_per_step']:.3f}" if lat and pix else "–"
            ach = f"{lat['achieved_gflops']:.0f}" if lat else "–"
            out.append(f"| {name} | {b} | {p} | {sps('latent', True)} | {sps('latent', False)} | {sps('pixels', True)} "
                       f"| {sps('pixels', False)} | {flops} | {ach} |")
    return "\n".join(out)


def main() -> None:
    for path in sys.argv[1:]:
        d = json.loads(Path(path).read_text())
        print(f"<!-- {path} -->")
        print(dream_table(d) if "presets" in d and "matmul_gflops" in d else world_model_table(d))
        print()


if __name__ == "__main__":
    main()
