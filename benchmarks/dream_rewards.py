"""Phantom rewards: how often the dream pays a reward beside how often the real game does, same policy.

For each world model: ``--dreams`` dreams of ``--horizon`` steps (the agent's dream episodes, from
held-out contexts) and ``--real-steps`` steps of the real game, under one policy (uniform random,
and the agent file of each ``--agent`` if given). Reports the mean reward per step and mean |reward|
on both sides (the dream pays the expected reward sign; the real side counts reward signs, as the
heads predict them), the return per ``horizon`` steps, and the dream's figures per stretch of the
horizon (drift shows up as rewards that climb with it).

    python benchmarks/dream_rewards.py --checkpoint runs/boxing/small/world_model.pt \
        --agent runs/boxing/small/agent.json --out benchmarks/results/dream_rewards_boxing.json

Speeds are not measured here, so no matmul peak is needed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from worldsim.agents.actor import AgentActor
from worldsim.envs import make_env
from worldsim.io import atomic_write_json
from worldsim.models.loading import load_world_model
from worldsim.sim.dream_env import DreamVectorEnv

STRETCHES = ((0, 5), (5, 20), (20, 50), (50, 100))


def rates(rewards: np.ndarray) -> dict[str, float]:
    """Mean reward per step, and mean |reward| (how much the side pays in either direction)."""
    return {"mean": float(rewards.mean()), "mean_abs": float(np.abs(rewards).mean())}


def policies(num_actions: int, agents: list[str], seed: int):
    rng = np.random.default_rng(seed)
    yield "random", lambda obs: rng.integers(0, num_actions, len(obs))
    for path in agents:
        yield f"agent:{path}", AgentActor.from_file(path)


def restart(act, index: int | None = None) -> None:
    """A new game for an agent's actor (its frame stack): all games, or game ``index`` of a batch."""
    if index is None and hasattr(act, "reset"):
        act.reset()
    elif index is not None and hasattr(act, "episode_done"):
        act.episode_done(index)


def dream_side(checkpoint: str, act, dreams: int, horizon: int, seed: int) -> dict:
    env = DreamVectorEnv(checkpoint=checkpoint, num_envs=dreams, horizon=horizon, context_split="val",
                         precision="fp32")
    obs, _ = env.reset(seed=seed)
    restart(act)
    signs = np.zeros((horizon, dreams))
    alive = np.ones(dreams, dtype=bool)  # count each dream's first episode only (ends autoreset)
    for t in range(horizon):
        obs, r, term, trunc, _ = env.step(act(obs))
        signs[t] = np.where(alive, r, np.nan)  # the dream pays the expected sign
        alive &= ~(term | trunc)
        for i in np.flatnonzero(term | trunc):
            restart(act, int(i))
    env.close()
    valid = ~np.isnan(signs)
    out = {"dreams": dreams, "horizon": horizon, **rates(signs[valid]),
           "mean_return_per_horizon": float(np.nansum(signs) / dreams)}
    out["by_stretch"] = {f"{a}-{b}": rates(signs[a:b][valid[a:b]]) for a, b in STRETCHES if b <= horizon and valid[a:b].any()}
    return out


def real_side(ckpt: dict, act, steps: int, horizon: int, seed: int) -> dict:
    env = make_env(ckpt["env"]["env"], **ckpt["env"]["env_kwargs"])
    obs, _ = env.reset(seed=seed)
    restart(act)
    signs = np.zeros(steps)
    for t in range(steps):
        obs, r, term, trunc, _ = env.step(int(act(obs[None])[0]))
        signs[t] = np.sign(r)
        if term or trunc:
            obs, _ = env.reset()
            restart(act)
    env.close()
    return {"steps": steps, **rates(signs), "mean_return_per_horizon": float(signs.mean() * horizon)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", action="append", required=True, help="world model(s); repeat to compare")
    ap.add_argument("--agent", action="append", default=[], help="agent file(s) to play besides a random policy")
    ap.add_argument("--dreams", type=int, default=32)
    ap.add_argument("--horizon", type=int, default=100)
    ap.add_argument("--real-steps", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    result = {"what": __doc__.split("\n")[0], "args": vars(args), "checkpoints": {}}
    real_done: dict[str, dict] = {}
    for path in args.checkpoint:
        _, ckpt = load_world_model(path, torch.device("cpu"))
        n = int(ckpt["env"]["num_actions"])
        entry = {"steps": int(ckpt["step"]), "policies": {}}
        for name, act in policies(n, args.agent, args.seed):
            dream = dream_side(path, act, args.dreams, args.horizon, args.seed)
            if name not in real_done:
                real_done[name] = real_side(ckpt, act, args.real_steps, args.horizon, args.seed)
            entry["policies"][name] = {"dream": dream, "real": real_done[name]}
            print(f"{path} [{name}] dream per step {dream['mean']:+.4f} (|r| {dream['mean_abs']:.4f}, "
                  f"return/{args.horizon} {dream['mean_return_per_horizon']:+.2f}); real sign per step "
                  f"{real_done[name]['mean']:+.4f} (|r| {real_done[name]['mean_abs']:.4f}, "
                  f"{real_done[name]['mean_return_per_horizon']:+.2f}); by stretch "
                  + json.dumps(dream["by_stretch"]))
        result["checkpoints"][path] = entry
    atomic_write_json(Path(args.out), result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
