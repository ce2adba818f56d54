"""Does an end target readable from the frames make lives end in the dream, and does the agent
trained there do better on the real game? (issue 12; docs/agents.md "Why lives do not end in the dream")

A Breakout life ends where the lives digit drops, 5-9 steps after the ball is gone: a timer longer than
the world model's 4-frame context, so the dream never drops the digit and never ends a life
(benchmarks/life_ends.py). ``model.end_within=k`` trains the end head on "the episode ends within k
steps" instead, which the frames show (the ball is gone).

Arms, all from one finished loop's world model (``--run``), on its own store and tokenizer:

* ``base``: that world model as it is;
* ``kN`` (``--arm k1:1 --arm k10:10``): the same checkpoint trained ``--steps`` more steps with
  ``end_within=N`` (k1 is the control: the same extra training, the old target), on its cosine
  schedule stretched to ``--schedule-steps`` (100000: near the peak rate; by default the schedule
  ends with the new steps, at its floor rate, where a head re-learning its target does not move);
  ``--arm k10w1:10:1`` also sets ``model.end_pos_weight=1``: with k = 10 about a quarter of Breakout's
  steps are positive and whether the paddle will miss is uncertain there, so the default weight 10
  (for rare, certain ends) moves the 0.5 decision down to a 1-in-11 chance of an end.

Per arm: ``worldsim evaluate-world-model`` (heads, in-rollout ends, false ends), a fresh PPO agent
trained in its dream (``--agent-steps``, the loop's agent settings), scored on the real game (10
episodes, the loop's fixed seeds) beside a random policy and in 16 dreams. ``--long-agent-steps N``
then continues a copy of that agent in the same dream to N PPO steps and scores both on
``--long-episodes`` real games (does a dream where lives end reward more practice?). Every stage
resumes; the JSON keeps each arm's settings, start time and the matmul peaks measured before it.

    python benchmarks/end_within.py --run runs/atari100k_wm4k_patch/breakout_seed1 --root runs/end_within \\
        --arm k10w1_peak:10:1 --arm base: --arm k1_peak:1 --schedule-steps 100000 \\
        --out benchmarks/results/end_within_breakout.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from worldsim.io import atomic_write_json, atomic_write_with

sys.path.insert(0, str(Path(__file__).parent))
from atari100k import peaks  # noqa: E402


def run(cmd: list[str]) -> None:
    print("$ worldsim " + " ".join(cmd), flush=True)
    subprocess.run([sys.executable, "-m", "worldsim.cli", *cmd], check=True)


def train_agent(env: list[str], world_model: Path | str, data: Path, out: Path, steps: int, agent: dict, loop: dict) -> None:
    """``worldsim train-agent`` in ``world_model``'s dream with the loop's agent settings (continues ``out``)."""
    run(["train-agent", *env, f"checkpoint={world_model}", f"data_dir={data}", f"out={out}", f"agent.steps={steps}",
         f"agent.seed={agent['seed'] + loop['seed']}", f"agent.frame_stack={agent['frame_stack']}",
         f"agent.horizon={agent['horizon']}", "progress=false"])


def fine_tune(src: Path, arm_dir: Path, within: int, pos_weight: float | None, steps: int,
              schedule_steps: int | None) -> None:
    """The source checkpoint trained ``steps`` more steps with the end target ``within`` (and the
    positive class weight ``pos_weight``; None: the checkpoint's), its cosine schedule stretched to
    ``schedule_steps`` (None: to the new total, so the rate stays near its floor) (resumes)."""
    from worldsim.config import dataclass_from_dict
    from worldsim.models.checkpoint import load_checkpoint, save_checkpoint
    from worldsim.training.train_world_model import WorldModelTrainConfig, train_world_model

    out = arm_dir / "world_model.pt"
    ckpt = load_checkpoint(src / "world_model.pt", kind="world_model")
    model_cfg = {**ckpt["config"]["model"], "end_within": within}
    if pos_weight is not None:
        model_cfg["end_pos_weight"] = pos_weight
    if not out.exists():  # the starting point: the source weights, optimiser and generators, the new target
        arm_dir.mkdir(parents=True, exist_ok=True)
        save_checkpoint(out, {**ckpt, "config": {**ckpt["config"], "model": model_cfg}})
    until = int(ckpt["step"]) + steps
    train = dataclass_from_dict(WorldModelTrainConfig, {**ckpt["config"]["train"], "steps": schedule_steps or until})
    train_world_model(src / "data", src / "tokenizer.pt", out, {k: v for k, v in model_cfg.items() if k != "tokenizer"},
                      train, env_meta=ckpt["env"], run_dir=arm_dir, progress=False, until=until)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, help="a finished `worldsim loop` run directory")
    ap.add_argument("--root", required=True)
    ap.add_argument("--arm", action="append", required=True,
                    help="NAME:K[:W] (K empty: the world model as it is; W: model.end_pos_weight, default the checkpoint's)")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--schedule-steps", type=int, default=None,
                    help="the fine-tune's cosine schedule length (e.g. 100000: near the peak rate throughout)")
    ap.add_argument("--agent-steps", type=int, default=40000)
    ap.add_argument("--long-agent-steps", type=int, default=0,
                    help="also continue each arm's agent in its dream to this many steps (a copy, under NAME/long)")
    ap.add_argument("--long-episodes", type=int, default=30,
                    help="real episodes for scoring the agent and its continuation side by side")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    src, root, out = Path(args.run), Path(args.root), Path(args.out)
    loop = json.loads((src / "loop.json").read_text())["fingerprint"]
    env = ["env=atari100k", f"env.kwargs.game={loop['env_kwargs']['game']}"]
    agent = loop["agent"]
    result = json.loads(out.read_text()) if out.exists() else {"source_run": str(src), "arms": {}}
    for spec in args.arm:
        name, k, *w = spec.split(":")
        pos_weight = float(w[0]) if w else None
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        if not (d / "arm.json").exists():
            atomic_write_json(d / "arm.json", {"started": time.strftime("%Y-%m-%d %H:%M:%S"), **peaks(),
                                              "end_within": int(k) if k else 1, "end_pos_weight": pos_weight,
                                              "extra_world_model_steps": args.steps if k else 0,
                                              "schedule_steps": args.schedule_steps if k else None})
        rec = json.loads((d / "arm.json").read_text())
        wm = d / "world_model.pt" if k else src / "world_model.pt"
        if k:
            fine_tune(src, d, int(k), pos_weight, args.steps, args.schedule_steps)
        ev_path, score_path = d / "eval" / "world_model_eval.json", d / "agent_evaluation.json"
        if not ev_path.exists():
            run(["evaluate-world-model", *env, f"checkpoint={wm}", f"data_dir={src / 'data'}", "split=val",
                 "num_windows=50", "horizons=[1,4,16]", "lpips=false", f"out_dir={d / 'eval'}", "progress=false"])
        if not (d / "agent.json").exists():
            train_agent(env, wm, src / "data", d / "agent.json", args.agent_steps, agent, loop)
        if not score_path.exists():
            run(["evaluate-agent", f"path={d / 'agent.json'}", "episodes=10", "progress=false"])
        ev, score = json.loads(ev_path.read_text()), json.loads(score_path.read_text())
        dream = score["dream"]
        result["arms"][name] = {
            **rec,
            "heads": {k: ev["heads"][k] for k in ("end_precision", "end_recall", "end_f1", "episode_ends", "end_targets")
                      if k in ev["heads"]},
            "dream_ends": ev["rollouts"].get("ends"), "false_end_rate": ev["rollouts"].get("false_end_rate"),
            "agent_real": {k: score["real"][k] for k in ("mean_return", "ci95", "episodes", "returns")},
            "random_real": score["random"]["mean_return"],
            "agent_dream": dream["mean_return"], "random_dream": dream["random"]["mean_return"],
            "agent_dream_length": sum(dream["lengths"]) / len(dream["lengths"]),
            "random_dream_length": sum(dream["random"]["lengths"]) / len(dream["random"]["lengths"]),
        }
        if args.long_agent_steps:
            result["arms"][name]["long"] = continue_agent(d, src / "data", env, agent, loop, args.long_agent_steps,
                                                          args.long_episodes)
        atomic_write_json(out, result)
    print(json.dumps(result, indent=1))


def continue_agent(d: Path, data: Path, env: list[str], agent: dict, loop: dict, steps: int, episodes: int) -> dict:
    """The arm's agent (``d/agent.json``) continued in the same dream to ``steps`` PPO steps (a copy
    under ``d/long``; ``train-agent`` resumes an existing agent file, weights, optimiser and step
    count), then both scored on ``episodes`` real games with the same fixed seeds (resumes)."""
    long = d / "long"
    long.mkdir(exist_ok=True)
    if not (long / "agent.json").exists():  # the weights first: the record is what marks the copy done
        shutil.copyfile(d / "agent.safetensors", long / "agent.safetensors")
        atomic_write_with(long / "agent.json", lambda tmp: shutil.copyfile(d / "agent.json", tmp))
    if not (long / "peaks.json").exists():
        atomic_write_json(long / "peaks.json", {"started": time.strftime("%Y-%m-%d %H:%M:%S"), **peaks()})
    record = json.loads((long / "agent.json").read_text())
    if record["num_timesteps"] < steps:
        train_agent(env, record["world_model"], data, long / "agent.json", steps, agent, loop)
    scores = {}
    for tag, path in (("short", d / "agent.json"), ("long", long / "agent.json")):
        score_path = long / f"{tag}_evaluation_{episodes}.json"
        if not score_path.exists():
            run(["evaluate-agent", f"path={path}", f"episodes={episodes}", f"out={score_path}", "progress=false"])
        score = json.loads(score_path.read_text())
        scores[tag] = {"num_timesteps": json.loads(path.read_text())["num_timesteps"],
                       "real": {k: score["real"][k] for k in ("mean_return", "ci95", "episodes", "returns", "lengths")},
                       "random_real": {k: score["random"][k] for k in ("mean_return", "ci95")},
                       "dream_agent_minus_random": score["dream"]["agent_minus_random"],
                       "agent_dream_length": sum(score["dream"]["lengths"]) / len(score["dream"]["lengths"])}
    return {**json.loads((long / "peaks.json").read_text()), **scores}


if __name__ == "__main__":
    main()
