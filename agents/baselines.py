"""A dream-trained agent scored on the real game beside its baselines, in one harness.

The dream agent, a uniformly random policy and (optionally) the model-free baseline — the same PPO
trained on the real game for the same number of real steps the world model saw — are each played
for the same episodes with the same fixed seeds (:func:`worldsim.agents.evaluate.evaluate_agent`).
The result is ``evaluation.json`` of a run directory, which the report shows; it is written after
each part, so an interrupted scoring resumes with what is missing.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from worldsim.agents.evaluate import AgentEvalConfig, evaluate_agent
from worldsim.agents.ppo import AgentConfig
from worldsim.agents.real_ppo import train_model_free
from worldsim.io import atomic_write_json


def score_with_baselines(run_dir: str | Path, env_name: str, env_kwargs: dict[str, Any], env_meta: dict[str, Any],
                         real_steps: int, agent: AgentConfig, episodes: int, model_free: bool = True,
                         num_workers: int = 0, progress: bool = True) -> dict[str, Any]:
    run_dir = Path(run_dir)
    out = run_dir / "evaluation.json"
    ecfg = AgentEvalConfig(episodes=episodes, num_workers=num_workers, progress=progress)
    result = json.loads(out.read_text()) if out.exists() else {}
    if result.get("real_steps") != real_steps or result.get("episodes") != episodes:
        result = {"real_steps": real_steps, "episodes": episodes}  # another budget: score again
    if "dream_agent" not in result:
        print(f"\n== scoring the dream agent and a random policy on the real game ({episodes} episodes) ==")
        result["dream_agent"] = evaluate_agent(run_dir / "agent.json", ecfg)
        atomic_write_json(out, result)
    if model_free and "model_free" not in result:
        print(f"\n== model-free baseline: the same PPO on the real game for {real_steps} real steps ==")
        path = run_dir / "model_free" / "agent.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        train = train_model_free(env_name, env_kwargs, env_meta, path, replace(agent, steps=real_steps), progress)
        score = evaluate_agent(path, replace(ecfg, random_baseline=False, dream_episodes=0))
        result["model_free"] = {"train": train, **score}
        atomic_write_json(out, result)
    print(f"\n{summary(result)}\nwritten to {out}")
    return result


def summary(result: dict[str, Any]) -> str:
    def one(name: str, r: dict[str, Any], hns: dict[str, Any] | None) -> str:
        text = f"{name} {r['mean_return']:.1f} [{r['ci95'][0]:.1f}, {r['ci95'][1]:.1f}]"
        return text + (f" (HNS {hns['mean']:.3f})" if hns else "")

    d = result["dream_agent"]
    parts = [one("dream agent", d["real"], d.get("hns"))]
    if "random" in d:
        parts.append(one("random", d["random"], d["random"].get("hns")))
    if "model_free" in result:
        parts.append(one("model-free", result["model_free"]["real"], result["model_free"].get("hns")))
    text = f"real game ({d['protocol']}, {result['episodes']} episodes each) after {result['real_steps']} real steps: "
    text += "; ".join(parts)
    if "dream" in d:
        text += f". The dream agent's return in its dream: {d['dream']['mean_return']:.1f} (gap {d['dream_to_real_gap']:+.1f})"
    return text
