"""Does the dream rank policies as the game does? Three policies of one Atari 100k run in its dream.

    python benchmarks/dream_ranking.py --runs runs/atari100k_cpu_stack4/breakout_seed2 \
        --out benchmarks/results/dream_ranking.json

For each run directory of ``benchmarks/atari100k.py`` (its ``world_model.pt``, the dream agent
``agent.json``, the model-free agent ``model_free/agent.json`` and their real-game scores in
``evaluation.json``), the dream agent, the model-free agent (trained on the real game, never in this
dream) and a uniformly random policy each play the same ``--episodes`` dreams: one batch reset with
one seed, so the same real contexts and the same noise streams start every policy's dreams, as the
agent's own dream return does (horizon from its record, the product's end threshold). Written beside
their real scores, per episode and per 100 agent steps (real games are full games of several
lives; a dream episode ends at the predicted end, a lost life under the training signal, or at the
horizon): if the model-free agent, which plays the real game better, also earns more in the dream,
the dream pays for the better play and PPO inside it did not find it; if not, the dream does not
reward what the game rewards. Paired differences (same contexts) carry a bootstrap interval.
Resumable: each run is written to the JSON as it finishes, and a re-run skips the ones there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from worldsim.agents.actor import AgentActor
from worldsim.agents.agent_file import read_agent
from worldsim.agents.evaluate import RandomActor, bootstrap_ci, play_dream
from worldsim.io import atomic_write_json
from worldsim.sim.dream_env import DreamVectorEnv

sys.path.insert(0, str(Path(__file__).parent))
from before_after import matmul_peak  # noqa: E402


def _summary(returns: np.ndarray, lengths: np.ndarray, seed: int) -> dict:
    return {"returns": returns.tolist(), "lengths": lengths.tolist(), "mean_return": float(returns.mean()),
            "ci95": list(bootstrap_ci(returns.tolist(), seed)), "mean_length": float(lengths.mean()),
            "reward_per_100_steps": float(100 * returns.sum() / max(1, lengths.sum()))}


def _real(score: dict) -> dict:
    returns, lengths = np.asarray(score["returns"], float), np.asarray(score["lengths"], float)
    return {"mean_return": float(returns.mean()), "ci95": score["ci95"], "mean_length": float(lengths.mean()),
            "reward_per_100_steps": float(100 * returns.sum() / max(1, lengths.sum()))}


def rank_run(run: Path, episodes: int, seed: int) -> dict:
    missing = [p for p in ("world_model.pt", "agent.json", "model_free/agent.json", "evaluation.json", "data")
               if not (run / p).exists()]
    if missing:
        raise SystemExit(f"{run} lacks {', '.join(missing)}: give run directories that benchmarks/atari100k.py "
                         "finished (world model, dream agent, model-free agent, their evaluation and the episode store).")
    evaluation = json.loads((run / "evaluation.json").read_text())
    record, _ = read_agent(run / "agent.json")
    horizon = int(record.get("agent_config", {}).get("horizon", 100))
    out = {"run": str(run), "episodes": episodes, "seed": seed, "horizon": horizon, "policies": {}}
    policies = {"random": None, "dream_agent": run / "agent.json", "model_free": run / "model_free/agent.json"}
    for name, path in policies.items():
        obs_type = read_agent(path)[0].get("observation", "pixels") if path else "pixels"
        envs = DreamVectorEnv(run / "world_model.pt", num_envs=episodes, data_dir=run / "data", horizon=horizon,
                              obs_type=obs_type)  # the run's own store: its checkpoint may name it relative to elsewhere
        if path is None:
            actor = RandomActor(envs.single_action_space.n, seed)
        else:
            spaces = SimpleNamespace(observation_space=envs.single_observation_space, action_space=envs.single_action_space)
            actor = AgentActor.from_file(path, env=spaces, where="the dream")
        torch.manual_seed(seed)  # the agents' own action samples
        start = time.perf_counter()
        returns, lengths = play_dream(envs, actor, seed)
        out["policies"][name] = {"dream": _summary(returns, lengths, seed), "dream_seconds": time.perf_counter() - start}
        envs.close()
        print(f"  {run.name} {name}: dream {returns.mean():.3f} per episode over {episodes}", flush=True)
    real = {"random": evaluation["dream_agent"]["random"], "dream_agent": evaluation["dream_agent"]["real"],
            "model_free": evaluation["model_free"]["real"]}
    for name, score in real.items():
        out["policies"][name]["real"] = _real(score)
    dream = {k: np.asarray(v["dream"]["returns"]) for k, v in out["policies"].items()}
    for a, b in (("model_free", "dream_agent"), ("dream_agent", "random"), ("model_free", "random")):
        diff = dream[a] - dream[b]  # paired: the same contexts and noise
        out[f"dream_{a}_minus_{b}"] = {"mean": float(diff.mean()), "ci95": list(bootstrap_ci(diff.tolist(), seed))}
    order = lambda key: sorted(out["policies"], key=lambda k: -out["policies"][k][key]["mean_return"])  # noqa: E731
    out["order_real"], out["order_dream"] = order("real"), order("dream")
    out["same_order"] = out["order_real"] == out["order_dream"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True, help="run directories of benchmarks/atari100k.py")
    parser.add_argument("--episodes", type=int, default=64, help="dream episodes per policy (one batch)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.episodes < 2:
        raise SystemExit(f"--episodes must be >= 2 for an interval, got {args.episodes}.")
    torch.set_num_threads(2)
    path = Path(args.out)
    result = json.loads(path.read_text()) if path.exists() else {
        "what": __doc__.split("\n\n")[2].replace("\n", " "), "command": "python " + " ".join(sys.argv), "runs": {}}
    for run in map(Path, args.runs):
        key = f"{run.parent.name}/{run.name}"
        if key in result["runs"]:
            print(f"{key}: done already, skipped")
            continue
        peak = matmul_peak(torch.float32, 1.0)
        print(f"{key}: fp32 matmul peak {peak:.0f} GFLOP/s", flush=True)
        result["runs"][key] = {**rank_run(run, args.episodes, args.seed), "fp32_peak_gflops": peak}
        atomic_write_json(path, result)
    for key, r in result["runs"].items():
        cells = ", ".join(f"{k} real {v['real']['mean_return']:.1f} / dream {v['dream']['mean_return']:.2f}"
                          for k, v in r["policies"].items())
        print(f"{key}: {cells}; same order: {r['same_order']}")


if __name__ == "__main__":
    main()
