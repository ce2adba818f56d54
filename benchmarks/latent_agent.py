"""Latent agent vs pixel agent, trained in one dream, scored on the real game with the same seeds.

For each Atari 100k loop run given (``benchmarks/atari100k.py`` run directories: its final world
model and store), two fresh PPO agents with the settings of ``configs/agent/ppo.yaml`` and the
run's 4-frame stack train for ``--dream-steps`` dream steps in the final world model's dream, one on
decoded pixels (``agent.observation=pixels``, what the loop trains) and one on latents
(``agent.observation=latent``: no decoding, ``LatentCnnPolicy``). Both are then scored with
``worldsim evaluate-agent``'s harness on ``--episodes`` full real games with the same fixed seeds
(the latent agent sees each real frame through the world model's tokenizer), beside the run's own
loop agent and random policy from its ``evaluation.json`` (same seeds). Dream steps/s of each
training come with the fp32 and bf16 matmul peaks measured just before it.

    python benchmarks/latent_agent.py --runs runs/atari100k_cpu_stack4/breakout_seed2 \
        --out benchmarks/results/latent_agent_atari100k.json

Resumable: each (run, kind, dream steps) is trained into ``<run>/latent_vs_pixels/<kind>_<steps>.json``
(agent files continue where they stopped) and recorded in the result file under ``<kind>_<steps>``
once scored; recorded ones are skipped. ``--kinds latent --dream-steps 200000`` adds a longer run;
``--num-envs 64 --n-steps 16`` a larger dream batch at the same PPO rollout size (key ``..._envs64``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from before_after import matmul_peak  # noqa: E402

from worldsim.agents.dream_ppo import train_agent_in_dream  # noqa: E402
from worldsim.agents.evaluate import AgentEvalConfig, evaluate_agent  # noqa: E402
from worldsim.agents.ppo import AgentConfig  # noqa: E402
from worldsim.io import atomic_write_json  # noqa: E402


def one(run: Path, key: str, kind: str, dream_steps: int, episodes: int, seed: int, batch: dict) -> dict:
    loop_agent = json.loads((run / "agent.json").read_text())
    cfg = replace(AgentConfig(**{k: v for k, v in loop_agent["agent_config"].items() if k in AgentConfig.__dataclass_fields__}),
                  steps=dream_steps, observation=kind, seed=seed, **batch)
    out = run / "latent_vs_pixels" / f"{key}.json"
    out.parent.mkdir(exist_ok=True)
    peaks = {"fp32_peak_gflops": matmul_peak(torch.float32, 1.0), "bf16_peak_gflops": matmul_peak(torch.bfloat16, 1.0)}
    t = time.perf_counter()
    train = train_agent_in_dream(run / "world_model.pt", out, cfg, data_dir=run / "data", progress=False, score=False)
    train_seconds = time.perf_counter() - t
    ev = json.loads((run / "evaluation.json").read_text())
    ecfg = AgentEvalConfig(episodes=episodes, seed=ev["dream_agent"]["real"]["seeds"][0], random_baseline=False,
                           dream_episodes=16)
    score = evaluate_agent(out, ecfg)
    return {"kind": kind, "num_envs": cfg.num_envs, "n_steps": cfg.n_steps, "dream_steps": train["dream_steps"], "dream_steps_per_s": train["dream_steps_per_s"],
            "train_seconds": train_seconds, **peaks, "real": score["real"], "dream": score.get("dream"),
            "dream_to_real_gap": score.get("dream_to_real_gap"), "precision": train["precision"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", nargs="+", required=True, help="loop run directories (benchmarks/atari100k.py)")
    ap.add_argument("--dream-steps", type=int, default=40_000, help="the loop's 4 x 10,000 dream steps")
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--kinds", nargs="+", default=["latent", "pixels"])
    ap.add_argument("--num-envs", type=int, default=None,
                    help="dreams per batch (default: the loop's 16); give --n-steps too, to keep PPO's rollout size")
    ap.add_argument("--n-steps", type=int, default=None, help="PPO rollout length per dream (default: the loop's 64)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {
        "what": "fresh latent and pixel PPO agents trained in the same final dream of an Atari 100k loop run, "
                "scored on the same real games", "commands": [], "runs": {}}
    command = "python " + " ".join(sys.argv)
    result["commands"] = [*(c for c in result.get("commands", []) if c != command), command]
    for run in map(Path, args.runs):
        ev = json.loads((run / "evaluation.json").read_text())
        entry = result["runs"].setdefault(run.name, {
            "loop_agent": ev["dream_agent"]["real"], "random": ev["dream_agent"].get("random"),
            "model_free": ev.get("model_free", {}).get("real")})
        batch = {k: v for k, v in (("num_envs", args.num_envs), ("n_steps", args.n_steps)) if v is not None}
        for kind in args.kinds:
            key = f"{kind}_{args.dream_steps}" + (f"_envs{args.num_envs}" if args.num_envs else "")
            if key in entry:
                continue
            seed = int(json.loads((run / "agent.json").read_text())["agent_config"]["seed"])
            entry[key] = one(run, key, kind, args.dream_steps, args.episodes, seed, batch)
            atomic_write_json(out, result)
            r = entry[key]
            print(f"{run.name} {key}: real {r['real']['mean_return']:.1f} {r['real']['ci95']}, "
                  f"{r['dream_steps_per_s']:.0f} dream steps/s (fp32 peak {r['fp32_peak_gflops']:.0f}, "
                  f"bf16 {r['bf16_peak_gflops']:.0f} GFLOP/s)", flush=True)
    atomic_write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
