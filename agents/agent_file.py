"""Agent files are data: weights in safetensors beside a JSON record, loaded without unpickling.

An agent is saved as two files with one stem, ``agent.json`` (the record) and
``agent.safetensors`` (the tensors)::

    agent.json         {"format": "worldsim-agent", "version": 1, "algo": "PPO", "policy": "CnnPolicy",
                        "observation_space": {...}, "frame_stack": 4, "action_space": {...}, "hyperparameters": {...},
                        "num_timesteps": ..., "env": {...}, "weights_sha256": ..., "versions": {...}}
    agent.safetensors  policy.<name>: the policy's state dict; optimizer.<i>.<key>: Adam's moments

(A save writes the new weights as ``agent.pending.safetensors`` first and renames them over
``agent.safetensors`` once the record names them: a save killed at any point leaves a readable agent.)

stable-baselines3's own ``.zip`` holds pickled Python objects, so loading one from someone else can
run code. Here the policy is *built* from the record (a class from a fixed list, spaces from plain
numbers) and filled from safetensors, which holds tensors only. Loading checks the format, the
version, that the weights are the ones the record was written with (SHA-256), that they fit the
policy, and, given an env, that the spaces match, with an error that says what differs.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import worldsim
from worldsim.io import atomic_write_json, atomic_write_with

FORMAT = "worldsim-agent"
VERSION = 1
HYPERPARAMETERS = ("n_steps", "batch_size", "n_epochs", "learning_rate", "ent_coef", "gamma", "gae_lambda",
                   "vf_coef", "max_grad_norm")


class AgentFileError(ValueError):
    pass


def _policy_classes() -> dict[str, type]:
    from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy

    from worldsim.agents.latent import LatentCnnPolicy

    return {"CnnPolicy": ActorCriticCnnPolicy, "MlpPolicy": ActorCriticPolicy, "LatentCnnPolicy": LatentCnnPolicy}


def pending_weights(weights_path: Path) -> Path:
    """Where :func:`save_agent` writes new weights before the record names them."""
    return weights_path.with_suffix(".pending.safetensors")


def agent_paths(path: str | Path) -> tuple[Path, Path]:
    """``runs/x/agent`` or ``runs/x/agent.json`` -> (record, weights) paths."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    return stem.with_suffix(".json"), stem.with_suffix(".safetensors")


# ----------------------------------------------------------------------------- spaces as plain data
def space_record(space: gym.Space) -> dict[str, Any]:
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n)}
    if isinstance(space, gym.spaces.Box):
        low, high = np.unique(space.low), np.unique(space.high)
        if len(low) != 1 or len(high) != 1:
            raise AgentFileError("only Box spaces with one low and one high value can be recorded.")

        def num(v: float) -> float | None:  # JSON has no infinity
            return None if not np.isfinite(v) else float(v)

        return {"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype), "low": num(low[0]),
                "high": num(high[0])}
    raise AgentFileError(f"cannot record a {type(space).__name__} space: agents use Box observations and Discrete actions.")


def space_from_record(rec: dict[str, Any]) -> gym.Space:
    if rec.get("type") == "Discrete":
        return gym.spaces.Discrete(int(rec["n"]))
    if rec.get("type") == "Box":
        dtype = np.dtype(rec["dtype"])
        if dtype.kind not in "uif":
            raise AgentFileError(f"unsupported Box dtype {rec['dtype']!r} in the agent record.")
        low = -np.inf if rec["low"] is None else rec["low"]
        high = np.inf if rec["high"] is None else rec["high"]
        return gym.spaces.Box(low, high, tuple(int(x) for x in rec["shape"]), dtype)
    raise AgentFileError(f"unknown space type {rec.get('type')!r} in the agent record.")


def check_spaces(record: dict[str, Any], observation_space: gym.Space, action_space: gym.Space, where: str) -> None:
    """Raise if an agent was made for other spaces than ``where``'s, naming what differs."""
    diffs = []
    for name, space in (("observation_space", observation_space), ("action_space", action_space)):
        have = record[name]
        want = space_record(space)
        if have != want:
            diffs.append(f"{name}: the agent has {have}, {where} has {want}")
    if diffs:
        raise AgentFileError("this agent was made for another environment:\n  " + "\n  ".join(diffs) +
                             "\nTrain an agent for this env (or latent/pixel observation type), or pick the matching env.")


# ----------------------------------------------------------------------------- save
def env_frames(venv) -> tuple[gym.Space, int]:
    """(the observation space of one step of ``venv``'s innermost env, the frames SB3 stacks on it):
    what a user's env must give, and how many of its frames the policy sees at once."""
    from stable_baselines3.common.vec_env import VecFrameStack

    n_stack = 1
    while hasattr(venv, "venv"):
        if isinstance(venv, VecFrameStack):
            n_stack = venv.stacked_obs.n_stack
        venv = venv.venv
    return venv.observation_space, n_stack


def save_agent(path: str | Path, model, extra: dict[str, Any] | None = None) -> Path:
    """Write a stable-baselines3 PPO agent as ``<stem>.safetensors`` + ``<stem>.json``; returns the JSON path.

    Three atomic steps: the new weights to ``<stem>.pending.safetensors``, the record (with their
    SHA-256), then the pending weights renamed over ``<stem>.safetensors``. A save killed at any
    point leaves a readable agent: the previous one (before the record), or the new one (after it,
    its weights still pending: :func:`read_agent` takes them by their hash).
    """
    from safetensors.torch import save as safetensors_bytes

    record_path, weights_path = agent_paths(path)
    step_space, n_stack = env_frames(model.get_env())
    policy_name = {v: k for k, v in _policy_classes().items()}.get(type(model.policy))
    if policy_name is None:
        raise AgentFileError(f"cannot save a {type(model.policy).__name__}: supported policies are {list(_policy_classes())}.")
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}  # SB3 shares the CNN between pi and vf: one copy on disk, the other names point to it
    seen: dict[tuple[int, tuple[int, ...]], str] = {}
    for k, v in model.policy.state_dict().items():
        key = (v.data_ptr(), tuple(v.shape))
        if key in seen:
            aliases[f"policy.{k}"] = seen[key]
            continue
        seen[key] = f"policy.{k}"
        tensors[f"policy.{k}"] = v.detach().cpu().contiguous()
    opt = model.policy.optimizer.state_dict()
    state_keys: dict[str, list[str]] = {}
    for i, state in opt["state"].items():
        state_keys[str(i)] = sorted(state)
        for key, value in state.items():
            tensors[f"optimizer.{i}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    blob = safetensors_bytes(tensors)
    pending = pending_weights(weights_path)
    atomic_write_with(pending, lambda tmp: Path(tmp).write_bytes(blob))
    hyper = {k: (float(v) if isinstance(v, float) else v) for k in HYPERPARAMETERS
             if isinstance(v := getattr(model, k, None), (int, float))}
    import stable_baselines3

    record = {
        "format": FORMAT, "version": VERSION, "algo": type(model).__name__, "policy": policy_name,
        # the env's observations (one step, what a user's env must give), how many of them the policy
        # sees stacked on the channel axis, and the policy's own space (SB3 transposes images to
        # channels-first in a VecTransposeImage wrapper; its policy transposes channels-last input itself)
        "observation_space": space_record(step_space), "frame_stack": n_stack,
        "policy_observation_space": space_record(model.observation_space), "action_space": space_record(model.action_space),
        "hyperparameters": hyper, "num_timesteps": int(model.num_timesteps),
        "optimizer": {"param_groups": opt["param_groups"], "state_keys": state_keys}, "aliases": aliases,
        "weights": weights_path.name, "weights_sha256": hashlib.sha256(blob).hexdigest(),
        "versions": {"worldsim": worldsim.__version__, "torch": torch.__version__,
                     "stable_baselines3": stable_baselines3.__version__},
        **(extra or {}),
    }
    atomic_write_json(record_path, record)
    os.replace(pending, weights_path)
    return record_path


# ----------------------------------------------------------------------------- load
def read_agent(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The validated record and tensors of an agent file."""
    from safetensors import SafetensorError
    from safetensors.torch import load as safetensors_load

    record_path, weights_path = agent_paths(path)
    if not record_path.exists():
        hint = " (a stable-baselines3 .zip is not accepted: it holds pickles)" if Path(path).suffix == ".zip" else ""
        raise FileNotFoundError(f"No agent record at {record_path}{hint}. Train one with `worldsim train-agent`.")
    try:
        record = json.loads(record_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AgentFileError(f"{record_path} is not a readable agent record ({e}); restore or retrain it.") from e
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise AgentFileError(f"{record_path} is not a worldsim agent record (no '{FORMAT}' format field).")
    if record.get("version") != VERSION:
        raise AgentFileError(f"{record_path} has agent format version {record.get('version')}; this worldsim reads {VERSION}.")
    if record.get("algo") != "PPO" or record.get("policy") not in _policy_classes():
        raise AgentFileError(f"{record_path}: unsupported agent {record.get('algo')}/{record.get('policy')} "
                             f"(supported: PPO with {', '.join(_policy_classes())}).")
    pending = pending_weights(weights_path)
    if not weights_path.exists() and not pending.exists():
        raise AgentFileError(f"{record_path} names weights {weights_path.name}, which are missing beside it.")
    blob = weights_path.read_bytes() if weights_path.exists() else b""
    digest = hashlib.sha256(blob).hexdigest()
    if digest != record.get("weights_sha256") and pending.exists():
        blob = pending.read_bytes()  # a save killed after its record, before its weights' rename
        digest = hashlib.sha256(blob).hexdigest()
    if digest != record.get("weights_sha256"):
        raise AgentFileError(f"{weights_path} is not the file {record_path.name} was written with (checksum differs): "
                             "it is damaged or from another save. Restore both files together, or retrain.")
    try:
        tensors = safetensors_load(blob)
    except (SafetensorError, ValueError) as e:
        raise AgentFileError(f"{weights_path} is not a readable safetensors file ({e}).") from e
    return record, tensors


def _policy_from(record: dict[str, Any], tensors: dict[str, torch.Tensor], device: str | torch.device):
    obs_space = space_from_record(record.get("policy_observation_space", record["observation_space"]))
    act_space = space_from_record(record["action_space"])
    lr = float(record["hyperparameters"].get("learning_rate", 3e-4))
    policy = _policy_classes()[record["policy"]](obs_space, act_space, lambda _: lr).to(device)
    aliases = record.get("aliases", {})
    missing = [target for target in aliases.values() if target not in tensors]
    if missing:
        raise AgentFileError(f"the agent record names tensors its weights file lacks: {missing[:3]}.")
    full = {**tensors, **{alias: tensors[target] for alias, target in aliases.items()}}
    weights = {k.removeprefix("policy."): v for k, v in full.items() if k.startswith("policy.")}
    try:
        policy.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise AgentFileError(f"the agent's weights do not fit its own record ({str(e)[:300]}).") from e
    return policy


def load_policy_record(path: str | Path, device: str | torch.device = "cpu", env: Any | None = None,
                       where: str = "the env") -> tuple[Any, dict[str, Any]]:
    """(the agent's policy, ready to ``predict``, its record); checked against ``env``'s spaces (one
    step) when given. Play it through :class:`worldsim.agents.actor.AgentActor`, which stacks frames."""
    record, tensors = read_agent(path)
    if env is not None:
        check_spaces(record, env.observation_space, env.action_space, where)
    policy = _policy_from(record, tensors, device)
    policy.set_training_mode(False)
    return policy, record


def restore_ppo(path: str | Path, env, device: str | torch.device = "cpu", **overrides: Any):
    """A PPO learner on ``env`` (an SB3 VecEnv) with the agent's weights, optimiser state and step
    count: training continues where the file left off."""
    from stable_baselines3 import PPO

    record, tensors = read_agent(path)
    step_space, n_stack = env_frames(env)
    check_spaces(record, step_space, env.action_space, "this env")
    if int(record.get("frame_stack", 1)) != n_stack:
        raise AgentFileError(f"{path} stacks {record.get('frame_stack', 1)} frames, and this run asks for {n_stack}: "
                             f"continue it with agent.frame_stack={record.get('frame_stack', 1)}, or train a new agent "
                             "into another file.")
    model = PPO(_policy_classes()[record["policy"]], env, device=device, verbose=0, **{**record["hyperparameters"], **overrides})
    policy = _policy_from(record, tensors, device)
    model.policy.load_state_dict(policy.state_dict())
    opt = model.policy.optimizer.state_dict()
    saved = record["optimizer"]
    state = {int(i): {k: tensors[f"optimizer.{i}.{k}"].to(device) for k in keys} for i, keys in saved["state_keys"].items()}
    try:
        model.policy.optimizer.load_state_dict({"state": state, "param_groups": [
            {**g, "params": mine["params"]} for g, mine in zip(saved["param_groups"], opt["param_groups"])]})
    except (ValueError, KeyError) as e:
        raise AgentFileError(f"the agent's optimiser state does not fit its policy ({e}).") from e
    model.num_timesteps = int(record["num_timesteps"])
    return model
