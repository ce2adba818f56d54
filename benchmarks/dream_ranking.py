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
The control (``real_segments``): the same policies on the real game from the same mid-game
states, for the same kind of segment: ``--episodes`` emulator states, each reached by a uniformly
random prefix of 0-19 steps after a seeded reset (one that does not lose a life), restored for
every policy (ALE state cloning; Atari 100k has no sticky actions, so a segment depends on the
actions only), played until a life is lost (the training signal the dream's end head learned) or 100 steps, with a fresh frame stack as
in the dream. If the game's segments tell the policies apart and the dream's do not, the dream is
what does not reward the better play.
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
from worldsim.agents.evaluate import RandomActor, bootstrap_ci, episode_summary, play_dream
from worldsim.io import atomic_write_json
from worldsim.sim.dream_env import DreamVectorEnv

sys.path.insert(0, str(Path(__file__).parent))
from before_after import matmul_peak  # noqa: E402


def _rates(returns: np.ndarray, lengths: np.ndarray) -> dict:
    return {"mean_length": float(lengths.mean()), "reward_per_100_steps": float(100 * returns.sum() / max(1, lengths.sum()))}


def _summary(returns: np.ndarray, lengths: np.ndarray, seed: int) -> dict:
    return {**episode_summary(returns, lengths, seed), **_rates(returns, lengths)}


def _real(score: dict) -> dict:
    returns, lengths = np.asarray(score["returns"], float), np.asarray(score["lengths"], float)
    return {"mean_return": float(returns.mean()), "ci95": score["ci95"], **_rates(returns, lengths)}


def real_segments(actors: dict, env_kwargs: dict, episodes: int, horizon: int,
                  seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each actor plays the same ``episodes`` real mid-game segments (see the module docstring)."""
    from worldsim.envs import make_env

    env = make_env("atari", **{**env_kwargs, "terminal_on_life_loss": True})
    rng = np.random.default_rng(seed)
    returns = {name: np.zeros(episodes) for name in actors}
    lengths = {name: np.zeros(episodes, dtype=np.int64) for name in actors}
    for i in range(episodes):
        prefix, attempt = int(rng.integers(0, 20)), 0
        while True:  # a random prefix that does not lose the life: a state early in a life, ball in play or not
            env.reset(seed=seed + i + attempt * episodes)
            if not any(env.step(int(rng.integers(env.action_space.n)))[2] for _ in range(prefix)):
                break
            attempt += 1
        start = env.clone_state()
        for name, actor in actors.items():
            obs = env.restore_state(start)
            actor.episode_done(0)  # a fresh frame stack, as at a dream's start
            for _ in range(horizon):
                obs, reward, term, trunc, _ = env.step(int(np.asarray(actor(obs[None]))[0]))
                returns[name][i] += reward
                lengths[name][i] += 1
                if term or trunc:
                    break
    env.close()
    return {name: (returns[name], lengths[name]) for name in actors}


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
    dreams: dict[str, DreamVectorEnv] = {}  # one per observation kind: a reset with the seed starts the same dreams
    for name, path in policies.items():
        obs_type = read_agent(path)[0].get("observation", "pixels") if path else "pixels"
        if obs_type not in dreams:  # the run's own store: its checkpoint may name it relative to elsewhere
            dreams[obs_type] = DreamVectorEnv(run / "world_model.pt", num_envs=episodes, data_dir=run / "data",
                                              horizon=horizon, obs_type=obs_type)
        envs = dreams[obs_type]
        if path is None:
            actor = RandomActor(envs.single_action_space.n, seed)
        else:
            spaces = SimpleNamespace(observation_space=envs.single_observation_space, action_space=envs.single_action_space)
            actor = AgentActor.from_file(path, env=spaces, where="the dream")
        torch.manual_seed(seed)  # the agents' own action samples
        start = time.perf_counter()
        returns, lengths = play_dream(envs, actor, seed)
        out["policies"][name] = {"dream": _summary(returns, lengths, seed), "dream_seconds": time.perf_counter() - start}
        print(f"  {run.name} {name}: dream {returns.mean():.3f} per episode over {episodes}", flush=True)
    for envs in dreams.values():
        envs.close()
    env = record["env"]  # on real frames (a latent agent through its tokenizer): actors of their own
    actors = {"random": RandomActor(record["action_space"]["n"], seed),
              **{name: AgentActor.from_file(path) for name, path in policies.items() if path is not None}}
    torch.manual_seed(seed)
    segments = real_segments(actors, env["env_kwargs"], episodes, horizon, 20_000 + seed)
    for name, (returns, lengths) in segments.items():
        out["policies"][name]["real_segments"] = _summary(returns, lengths, seed)
    print(f"  {run.name} real segments: " + ", ".join(f"{k} {v[0].mean():.3f}" for k, v in segments.items()), flush=True)
    segments = {name: returns for name, (returns, _) in segments.items()}
    real = {"random": evaluation["dream_agent"]["random"], "dream_agent": evaluation["dream_agent"]["real"],
            "model_free": evaluation["model_free"]["real"]}
    for name, score in real.items():
        out["policies"][name]["real"] = _real(score)
    dream = {k: np.asarray(v["dream"]["returns"]) for k, v in out["policies"].items()}
    for a, b in (("model_free", "dream_agent"), ("dream_agent", "random"), ("model_free", "random")):
        diff = dream[a] - dream[b]  # paired: the same contexts and noise
        out[f"dream_{a}_minus_{b}"] = {"mean": float(diff.mean()), "ci95": list(bootstrap_ci(diff.tolist(), seed))}
        diff = segments[a] - segments[b]  # paired: the same emulator states
        out[f"real_segments_{a}_minus_{b}"] = {"mean": float(diff.mean()), "ci95": list(bootstrap_ci(diff.tolist(), seed))}
    order = lambda key: sorted(out["policies"], key=lambda k: -out["policies"][k][key]["mean_return"])  # noqa: E731
    out["order_real"], out["order_dream"] = order("real"), order("dream")
    out["order_real_segments"] = order("real_segments")
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
