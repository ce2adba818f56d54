"""Print the markdown tables of the docs from the benchmark JSON files, so the figures in the docs
are copied by a program, not by hand.

    python benchmarks/tables.py benchmarks/results/world_model_boxing.json
    python benchmarks/tables.py benchmarks/results/dream_throughput.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from worldsim.evaluation.tables import heads_summary, rollout_table


def world_model_table(d: dict) -> str:
    """A world-model benchmark result (benchmarks/world_model_atari.py): the rollout table, the
    training time and the heads, rendered by the same code as the CLI and the run report."""
    ev, tok, wm = d["evaluation"], d["tokenizer"], d["world_model"]
    out = [rollout_table(ev), ""]
    out.append(f"CPU training: tokenizer {tok.get('train_seconds', 0) / 60:.1f} min + world model "
               f"{wm.get('train_seconds', 0) / 60:.1f} min ({wm.get('steps')} steps) = {d['cpu_training_minutes']:.1f} min; "
               f"tokenizer held-out PSNR {tok.get('psnr', 0):.2f} dB, motion PSNR {tok.get('motion_psnr', 0):.2f} dB.")
    heads = heads_summary(ev)
    if heads:
        out.append(heads)
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


def sampling_table(d: dict) -> str:
    """benchmarks/sampling_steps.py: quality and dream speed per number of sampling steps."""
    hs = None
    out = []
    for n, run in sorted(d["runs"].items(), key=lambda kv: int(kv[0])):
        r = run["evaluation"]["rollouts"]
        hs = hs or sorted(r["model"], key=int)
        first, last = hs[0], hs[-1]
        m, rep = r["model"], r["repeat_last"]
        out.append(f"| {n} | {m[first]['psnr']:.2f} / {m[last]['psnr']:.2f} | {m[first]['motion_psnr']:.2f} / "
                   f"{m[last]['motion_psnr']:.2f} | {m[first]['lpips']:.3f} / {m[last]['lpips']:.3f} | "
                   f"{rep[first]['lpips']:.3f} / {rep[last]['lpips']:.3f} | {m[first]['moving_sharpness']:.2f} / "
                   f"{m[last]['moving_sharpness']:.2f} | {r['controllability_db'][last]:+.2f} | "
                   f"{run['dream_steps_per_s_pixels']:.0f} |")
    head = [f"matmul peak in the same run: fp32 {d['matmul_gflops']['fp32']:.0f} GFLOP/s, bf16 "
            f"{d['matmul_gflops']['bf16']:.1f} GFLOP/s; dream precision {d['precision']}; {d['windows']} windows.", "",
            f"| steps | PSNR h{hs[0]} / h{hs[-1]} | motion PSNR | LPIPS | repeat-last LPIPS | moving sharpness | "
            f"controllability h{hs[-1]} (dB) | dream steps/s (pixels, batch 64) |", "|---" * 8 + "|"]
    return "\n".join(head + out)


def arms_table(d: dict) -> str:
    """An A/B/... of training recipes × sampling steps (e.g. sharp_sampling_boxing.json)."""
    def survival(m: dict, h: str) -> str:  # every sprite's survival (and placement, where measured) at h
        keys = sorted(k for k in m[h] if k.startswith("survival_")) + sorted(k for k in m[h] if k.startswith("placed_"))
        return " / ".join("–" if m[h][k] is None else f"{m[h][k]:.2f}" for k in keys) or "–"

    out = ["| arm | steps | LPIPS h1 / h4 / h16 | FD-LPIPS h1 / h16 | moving sharpness h1 / h16 | sprites survive / placed h1 "
           "| PSNR h1 / h16 | motion PSNR h16 | controllability h16 (dB) | dream steps/s (pixels, batch 64) |",
           "|---" * 10 + "|"]
    rep = None
    for arm, entry in d["arms"].items():
        for n, run in sorted(entry["by_sampling_steps"].items(), key=lambda kv: int(kv[0])):
            m, rep = run["model"], run["repeat_last"]
            out.append(f"| {arm} | {n} | {m['1']['lpips']:.3f} / {m['4']['lpips']:.3f} / {m['16']['lpips']:.3f} | "
                       f"{m['1']['fd_lpips']:.2f} / {m['16']['fd_lpips']:.2f} | {m['1']['moving_sharpness']:.2f} / "
                       f"{m['16']['moving_sharpness']:.2f} | {survival(m, '1')} | {m['1']['psnr']:.2f} / {m['16']['psnr']:.2f} | "
                       f"{m['16']['motion_psnr']:.2f} | {run['controllability_db']['16']:+.2f} | "
                       f"{run['dream_steps_per_s_pixels_batch64']:.0f} |")
    if rep:
        out.append(f"| repeat-last | – | {rep['1']['lpips']:.3f} / {rep['4']['lpips']:.3f} / {rep['16']['lpips']:.3f} | "
                   f"{rep['1']['fd_lpips']:.2f} / {rep['16']['fd_lpips']:.2f} | {rep['1']['moving_sharpness']:.2f} / "
                   f"{rep['16']['moving_sharpness']:.2f} | {survival(rep, '1')} | {rep['1']['psnr']:.2f} / "
                   f"{rep['16']['psnr']:.2f} | {rep['16']['motion_psnr']:.2f} | – | – |")
    return "\n".join(out)


def main(paths: list[str]) -> None:
    for path in paths:
        d = json.loads(Path(path).read_text())
        print(f"<!-- {path} -->")
        if "arms" in d:
            print(arms_table(d))
        elif "presets" in d and "matmul_gflops" in d:
            print(dream_table(d))
        elif "runs" in d and "checkpoint" in d:
            print(sampling_table(d))
        else:
            print(world_model_table(d))
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
