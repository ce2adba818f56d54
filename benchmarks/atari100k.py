"""Agents trained in the dream vs random vs model-free, under the Atari 100k protocol, games x seeds.

Each (game, seed) is one ``worldsim loop`` run (``env=atari100k``: frame skip 4 with max-pool, no
sticky actions, 1-30 no-ops, life loss terminal while training only, 64x64 RGB, minimal actions)
with the CPU recipe below, scored at its end on full real games with fixed seeds beside a uniformly
random policy and the same PPO trained on the real game for the same real steps (model-free). After
each run the per-game scores and the rliable aggregates (IQM, median, mean of human-normalized
scores with stratified-bootstrap 95% intervals) over the seeds every game has are rewritten.

    python benchmarks/atari100k.py                       # pong, breakout, boxing x seeds 0, 1, 2
    python benchmarks/atari100k.py --max-minutes 100     # start no new run after 100 minutes
    python benchmarks/atari100k.py --reseed-model-free --seeds 1 2   # see below
    python benchmarks/atari100k.py --games boxing --seeds 0 --root runs/atari100k_wm4k_patch \
        --out benchmarks/results/atari100k_cpu_stack4_wm4k_patch.json \
        --extra loop.world_model_steps_per_iteration=1000 model.tokenizer.encoder=patch   # a variant recipe

A variant's overrides are recorded in its result file (``extra``, ``recipe``, ``command``); give it
its own ``--root`` and ``--out`` so its runs are never mixed with the protocol recipe's.

Runs made before the loop seeded PPO with ``agent.seed + seed`` trained every seed's model-free
baseline from seed 0 (seeds 0 and 2 were one agent). ``--reseed-model-free`` trains those baselines
again with ``agent.seed = seed`` into ``<run>/model_free_seeded/`` (the loop's own commands: the same
PPO, real steps and 10 fixed test games), and the summary takes them in place of the old ones, which
it keeps as ``model_free_before_seed_fix``; it works for runs whose directories are gone too.

Chunked and resumable: runs go seed-major (every game's seed 0 first), each run resumes where it
was killed (while its run directory lives), a finished run is never repeated (the result file
keeps it, so a later session on a fresh machine goes on with the next), and the result file says
which runs are missing (``"partial": true``). Wall time is measured per run segment beside the
matmul peaks of the same machine; a segment killed before it ends is not counted (then the figure
is a lower bound).
Writes ``benchmarks/results/atari100k_cpu_stack4.json`` and its plot (``atari100k_cpu.json`` holds
the earlier runs, whose agents saw single frames).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from worldsim.evaluation.world_model_eval import reward_signal
from worldsim.io import atomic_write_json

# The CPU recipe: the protocol's 100k real steps; world-model and agent budgets sized for 2 cores.
RECIPE = [
    "model=small", "loop.real_steps=100000", "loop.iterations=4", "loop.tokenizer_steps_first=1500",
    "loop.tokenizer_steps_per_iteration=100", "loop.world_model_steps_per_iteration=250",
    "loop.agent_steps_per_iteration=10000", "loop.final_episodes=10", "agent.frame_stack=4", "device=cpu",
    "progress=false",
]
# Runs before agents saw frame stacks (single frames: no motion) are kept in atari100k_cpu.json.
OUT = "benchmarks/results/atari100k_cpu_stack4.json"


GAMES, SEEDS = ["pong", "breakout", "boxing"], [0, 1, 2]


def peaks() -> dict[str, float]:
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from dream_throughput import matmul_peak

    return {"fp32_gflops": matmul_peak(torch.float32), "bf16_gflops": matmul_peak(torch.bfloat16)}


def run_one(game: str, seed: int, run_dir: Path, extra: list[str]) -> None:
    """Run (or resume) one loop to its end, then the heads / fidelity check of its world model."""
    times_path = run_dir / "bench_segments.json"
    segments = json.loads(times_path.read_text()) if times_path.exists() else []
    if (run_dir / "bench_done.json").exists():
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    seg = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), **peaks(), "seconds": None}
    atomic_write_json(times_path, [*segments, seg])  # seconds stays None if this segment is killed
    t = time.perf_counter()
    loop = [sys.executable, "-m", "worldsim.cli", "loop", "env=atari100k", f"env.kwargs.game={game}", f"seed={seed}",
            f"run_dir={run_dir}", *RECIPE, *extra]
    print("$ " + " ".join(loop[2:]), flush=True)
    subprocess.run(loop, check=True)
    evaluate = [sys.executable, "-m", "worldsim.cli", "evaluate-world-model", "env=atari100k", f"env.kwargs.game={game}",
                f"checkpoint={run_dir / 'world_model.pt'}", f"data_dir={run_dir / 'data'}", "split=val",
                "num_windows=50", "horizons=[1,4,16]", "lpips=false", f"out_dir={run_dir / 'eval'}", "progress=false"]
    subprocess.run(evaluate, check=True)
    seg["seconds"] = time.perf_counter() - t
    atomic_write_json(times_path, [*segments, seg])
    atomic_write_json(run_dir / "bench_done.json", {"finished": time.strftime("%Y-%m-%d %H:%M:%S")})


def reseed_model_free(game: str, seed: int, run_dir: Path) -> None:
    """Train and score the model-free baseline of a run made before the seeding fix, with its own seed."""
    d = run_dir / "model_free_seeded"
    if (d / "agent_evaluation.json").exists():
        return
    d.mkdir(parents=True, exist_ok=True)
    seg = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), **peaks()}
    worldsim = [sys.executable, "-m", "worldsim.cli"]
    train = ["train-model-free", "env=atari100k", f"env.kwargs.game={game}", "agent.steps=100000", "agent.frame_stack=4",
             f"agent.seed={seed}", f"out={d / 'agent.json'}", "progress=false"]
    score = ["evaluate-agent", f"path={d / 'agent.json'}", "episodes=10", "seed=10000", "dream_episodes=0",
             "random_baseline=false", "progress=false"]
    for cmd in (train, score):
        print("$ worldsim " + " ".join(cmd), flush=True)
        subprocess.run([*worldsim, *cmd], check=True)
    atomic_write_json(d / "peaks.json", seg)


def with_reseeded_model_free(run: dict, run_dir: Path) -> dict:
    """A run's entry with the re-seeded model-free baseline in place of the old one, when it exists."""
    d = run_dir / "model_free_seeded"
    if not (d / "agent_evaluation.json").exists():
        return run
    ev = json.loads((d / "agent_evaluation.json").read_text())
    agent = json.loads((d / "agent.json").read_text())
    if "model_free_before_seed_fix" not in run:
        run["model_free_before_seed_fix"] = {"mean_return": run["model_free"], "ci95": run["model_free_ci95"],
                                             "agent_seed": 0}
    peaks_path = d / "peaks.json"
    run.update({"model_free": ev["real"]["mean_return"], "model_free_ci95": ev["real"]["ci95"],
                "model_free_agent_seed": agent["agent_config"]["seed"],
                "model_free_reseeded": {"returns": ev["real"]["returns"], "seeds": ev["real"]["seeds"],
                                        "num_timesteps": agent["num_timesteps"],
                                        "matmul_peaks_before": (json.loads(peaks_path.read_text())
                                                                if peaks_path.exists() else None)}})
    return run


def recorded_runs(out: Path) -> dict:
    """Runs already in the result file: their run directories may be gone (a fresh machine), their
    figures are not; they count as done and are never repeated."""
    return json.loads(out.read_text()).get("runs", {}) if out.exists() else {}


def summarise(root: Path, games: list[str], seeds: list[int], out: Path, extra: list[str] | None = None) -> dict:
    from worldsim.agents.aggregate import aggregate_scores, plot_aggregates

    runs, missing = {}, []
    recorded = recorded_runs(out)
    for seed in seeds:
        for game in games:
            d = root / f"{game}_seed{seed}"
            if not (d / "bench_done.json").exists():
                if f"{game}/seed{seed}" in recorded:
                    runs[f"{game}/seed{seed}"] = with_reseeded_model_free(recorded[f"{game}/seed{seed}"], d)
                else:
                    missing.append(f"{game}/seed{seed}")
                continue
            ev = json.loads((d / "evaluation.json").read_text())
            wm = json.loads((d / "eval" / "world_model_eval.json").read_text())
            loop = json.loads((d / "loop.json").read_text())
            segs = json.loads((d / "bench_segments.json").read_text())
            da = ev["dream_agent"]
            runs[f"{game}/seed{seed}"] = {
                "game": game, "seed": seed, "real_steps": ev["real_steps"],
                "dream_agent": da["real"]["mean_return"], "dream_agent_ci95": da["real"]["ci95"],
                "random": da["random"]["mean_return"], "model_free": ev["model_free"]["real"]["mean_return"],
                "model_free_ci95": ev["model_free"]["real"]["ci95"],
                "dream_return": da.get("dream", {}).get("mean_return"), "dream_to_real_gap": da.get("dream_to_real_gap"),
                "dream_random_return": da.get("dream", {}).get("random", {}).get("mean_return"),  # same dreams, random play
                "reward_balanced_accuracy": wm["heads"]["reward_balanced_accuracy"], "end_f1": wm["heads"]["end_f1"],
                "psnr_h16": wm["rollouts"]["model"]["16"]["psnr"],
                "repeat_last_psnr_h16": wm["rollouts"]["repeat_last"]["16"]["psnr"],
                "dream_pays_by_real_sign": wm["rollouts"].get("rollout_reward_by_real_sign"),
                "dream_pays_counts": wm["rollouts"].get("rollout_real_sign_counts"),
                "dream_ends": wm["rollouts"].get("ends"),  # do lives end in the dream where they end in the game?
                "false_end_rate": wm["rollouts"].get("false_end_rate"),
                "reward_signal": (reward_signal(wm["rollouts"]["rollout_reward_by_real_sign"],  # today's rule
                                                wm["rollouts"]["rollout_real_sign_counts"])
                                  if "rollout_real_sign_counts" in wm["rollouts"] else None),
                # killed segments (seconds None) are not timed: with one, the wall time is a lower bound too
                "wall_minutes": sum(s["seconds"] or 0 for s in segs) / 60, "segments": segs,
                "wall_minutes_lower_bound": any(s["seconds"] is None for s in segs),
                "loop_stage_minutes": {k: sum(r["seconds"][k] for r in loop["iterations"]) / 60
                                       for k in loop["iterations"][0]["seconds"]},
                # a killed and resumed run: loop.json counts each iteration's stages in the process that finished it
                "loop_stage_minutes_lower_bound": len(segs) > 1 or any(s["seconds"] is None for s in segs),
            }
            runs[f"{game}/seed{seed}"] = with_reseeded_model_free(runs[f"{game}/seed{seed}"], d)
    for key, run in recorded.items():  # runs of other games or seeds than this call's stay in the file
        runs.setdefault(key, run)
    complete = [s for s in seeds if all(f"{g}/seed{s}" in runs for g in games)]
    previous = json.loads(out.read_text()) if out.exists() else {}
    extra = previous.get("extra", []) if extra is None else extra  # a summary-only call keeps the runs' overrides
    command = " ".join(["python benchmarks/atari100k.py",
                        *([f"--root {root}", f"--out {out}"] if out != Path(OUT) else []),
                        *(["--extra", *extra] if extra else [])])
    result = {"what": "worldsim loop under the Atari 100k protocol on CPU: dream agent vs random vs model-free",
              "recipe": [*RECIPE, *extra], "extra": extra, "games": games, "seeds": seeds, "partial": bool(missing),
              "missing_runs": missing, "runs": runs, "command": command}
    if previous.get("note"):
        result["note"] = previous["note"]
    if complete:
        scores = {m: {g: [runs[f"{g}/seed{s}"][m] for s in complete] for g in games}
                  for m in ("dream_agent", "model_free", "random")}
        agg = aggregate_scores(scores, reps=2000, seed=0)
        result["aggregate"] = {**agg, "seeds_used": complete}
        plot_aggregates(agg, out.with_suffix(".png"))
    atomic_write_json(out, result)
    return result


def covered(args) -> tuple[list[str], list[int]]:
    """The summary covers the protocol's games and seeds and any others asked for, so running one
    game or seed never drops the rest from the result file."""
    return [*GAMES, *(g for g in args.games if g not in GAMES)], sorted({*SEEDS, *args.seeds})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--games", nargs="+", default=GAMES, help="which games to run now (the summary covers all)")
    ap.add_argument("--seeds", nargs="+", type=int, default=SEEDS, help="which seeds to run now")
    ap.add_argument("--root", default="runs/atari100k_cpu_stack4", help="where the run directories live")
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--max-minutes", type=float, default=None, help="start no new run after this many minutes")
    ap.add_argument("--summarise-only", action="store_true")
    ap.add_argument("--extra", nargs="*", default=[], help="more Hydra overrides for every loop run")
    ap.add_argument("--reseed-model-free", action="store_true",
                    help="re-train the model-free baselines of the given seeds with their own seed (runs made "
                         "before the loop's seeding fix) and take them into the summary")
    args = ap.parse_args()
    root, out = Path(args.root), Path(args.out)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    t0 = time.perf_counter()
    done = recorded_runs(out)
    if args.reseed_model_free:
        for seed in args.seeds:
            for game in args.games:
                if seed != 0:  # seed 0's baseline was trained from seed 0 already
                    reseed_model_free(game, seed, root / f"{game}_seed{seed}")  # resumable: the summary below reads it
        args.summarise_only = True
    todo = [] if args.summarise_only else [(g, s) for s in args.seeds for g in args.games if f"{g}/seed{s}" not in done]
    for game, seed in todo:
        if args.max_minutes is not None and (time.perf_counter() - t0) / 60 > args.max_minutes:
            print(f"stopping: {args.max_minutes} minutes used; run again to continue")
            break
        run_one(game, seed, root / f"{game}_seed{seed}", args.extra)
        summarise(root, *covered(args), out, args.extra)
    # a summary-only call without --extra keeps the overrides the result file records
    result = summarise(root, *covered(args), out, None if args.summarise_only and not args.extra else args.extra)
    print(json.dumps({k: result[k] for k in ("partial", "missing_runs")}, indent=1))


if __name__ == "__main__":
    main()
