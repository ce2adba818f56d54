"""The model-based loop (World Models, DIAMOND) within a budget of real environment steps.

    worldsim loop env=atari100k env.kwargs.game=pong loop.real_steps=100000 loop.iterations=10

Each iteration, one stage after another, each resumable:

1. **collect** real steps into the run's store: the first iteration with ``loop.first_policy``
   (no agent exists yet), later ones with the current agent, epsilon-greedy (``loop.epsilon``);
2. **tokenizer**: continue training on the grown store (``tokenizer_steps_*``);
3. **world model**: continue training on the grown store with the latest tokenizer;
4. **agent**: continue PPO in the dream of the latest world model, contexts drawn from real play.

Then, once: the agent scored on the real game with fixed seeds beside a random policy (and its
return in the dream), and (``loop.model_free``) the same PPO trained on the real game for the same
number of real steps, scored the same way.

Nothing is trained from scratch twice: every stage continues its own checkpoint to a cumulative
target (iteration ``k`` trains the world model to ``k x world_model_steps_per_iteration`` steps on a
learning-rate schedule laid out over the whole loop). A run killed at any moment (even ``kill -9``)
continues from the last completed unit of work when the same command is run again: finished
episodes, checkpoints and agent saves are written atomically, and ``loop.json`` records each
iteration once it is complete. **The real-step counter is the episode store itself**: the steps of
the episodes on disk. Steps of episodes still in flight when a run is killed are not stored and not
counted; they are played again.

Run directory: ``data/`` (the store), ``tokenizer.pt``, ``world_model.pt``, ``agent.json`` (+
``.safetensors``), ``loop.json`` (per-iteration records), ``metrics.jsonl`` and ``tb/`` (``real/…``,
``wm/…``, ``tok/…``, ``rl/…`` against real steps; the trainers' own curves are in ``tokenizer/`` and
``world_model/``), ``evaluation.json`` and ``model_free/``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from worldsim.agents.ppo import AgentConfig
from worldsim.config import dataclass_from_dict
from worldsim.io import atomic_write_json, atomic_write_text

STATE_VERSION = 1


@dataclass
class LoopConfig:
    """The loop's budgets; the same values are ``configs/loop.yaml``'s ``loop:`` (a test keeps them equal)."""

    real_steps: int = 100_000  # total real env steps (Atari 100k: 100k agent steps = 400k frames)
    iterations: int = 10
    first_policy: str = "sticky_random"  # collection policy of iteration 1 (random, sticky_random)
    epsilon: float = 0.01  # uniform-action probability while collecting with the agent (DIAMOND, IRIS)
    num_workers: int = 0  # collection processes (0: one per core)
    tokenizer_steps_first: int = 2000
    tokenizer_steps_per_iteration: int = 200
    world_model_steps_per_iteration: int = 400
    agent_steps_per_iteration: int = 10_000  # dream steps
    final_episodes: int = 10  # real episodes to score the agent (and each baseline) on, fixed seeds
    model_free: bool = True  # also train the same PPO on the real game for the same real steps

    def check(self, agent: AgentConfig) -> None:
        if self.iterations < 1:
            raise ValueError(f"loop.iterations must be >= 1, got {self.iterations}.")
        per = self.real_steps // self.iterations
        if per < 1:
            raise ValueError(f"loop.real_steps={self.real_steps} is smaller than one step per iteration "
                             f"(loop.iterations={self.iterations}): raise the budget or lower the iterations.")
        if self.agent_steps_per_iteration < agent.num_envs * agent.n_steps:
            raise ValueError(f"loop.agent_steps_per_iteration={self.agent_steps_per_iteration} is less than one PPO "
                             f"rollout (agent.num_envs x agent.n_steps = {agent.num_envs * agent.n_steps}): raise it "
                             f"or lower agent.num_envs / agent.n_steps.")
        if self.first_policy not in ("random", "sticky_random"):
            raise ValueError(f"loop.first_policy must be random or sticky_random, got {self.first_policy!r}.")

    def real_target(self, k: int) -> int:  # store size after iteration k (1-based)
        return self.real_steps * k // self.iterations

    def tokenizer_target(self, k: int) -> int:
        return self.tokenizer_steps_first + (k - 1) * self.tokenizer_steps_per_iteration


# Keys the model presets gained after loop runs were written, with the value those runs trained with
# (the dataclass default of the time: the key could not be set), so an old fingerprint without the
# key is the same run. Historical values: do not follow later changes of the defaults.
LATER_MODEL_KEYS: dict[tuple[str, ...], Any] = {
    ("memory_span",): 0, ("end_within",): 1, ("end_pos_weight",): 10.0, ("tokenizer", "encoder"): "conv",
    ("world_model_train", "grad_accum"): 1, ("world_model_train", "rollout_windows"): 0,
    ("edm", "shortcut_levels"): 0, ("edm", "shortcut_share"): 0.25,
    **{(group, key): value for group in ("tokenizer_train", "world_model_train")
       for key, value in (("log_every", 50), ("ckpt_every", 500))},
}


def _read_state(run_dir: Path, fingerprint: dict[str, Any]) -> dict[str, Any]:
    path = run_dir / "loop.json"
    if not path.exists():
        return {"version": STATE_VERSION, "fingerprint": fingerprint, "iterations": []}
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); it is the loop's record: restore it or pick a new run_dir.")
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"{path} has version {state.get('version')}, this worldsim writes {STATE_VERSION}; pick a new run_dir.")
    old = state.get("fingerprint", {})
    if isinstance(old.get("agent"), dict):  # runs from before agent.observation existed trained on pixels
        old["agent"].setdefault("observation", "pixels")
        old["agent"].setdefault("dream_reward", "expected")  # and their dreams paid the expected sign
    if isinstance(old.get("model"), dict):  # runs from before a preset key existed ran on its default
        for path, value in LATER_MODEL_KEYS.items():
            node = old["model"]
            for key in path[:-1]:
                node = node.get(key) if isinstance(node, dict) else None
            if isinstance(node, dict):
                node.setdefault(path[-1], value)
    if old != fingerprint:
        new = fingerprint
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise ValueError(f"{run_dir} holds a loop run with other settings ({', '.join(diff)} differ); continue it with "
                         f"the same settings or pick a new run_dir=...")
    return state


def _log(run_dir: Path, state: dict[str, Any], record: dict[str, Any]) -> None:
    """metrics.jsonl is rewritten whole from the loop's state (a kill never leaves a duplicate or half a line);
    TensorBoard gets the new iteration's scalars."""
    rows = [{"step": r["real_steps"], **r["scalars"]} for r in state["iterations"]]
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return
    with SummaryWriter(str(run_dir / "tb")) as w:
        for k, v in record["scalars"].items():
            w.add_scalar(k, v, record["real_steps"])


def _store_returns(store, first_index: int) -> tuple[int, float | None]:
    """Episodes an iteration recorded (store indices from ``first_index`` on) and their mean return
    (under Atari 100k an episode ends at a lost life while collecting: a return per life, not a game score)."""
    new = [i.name for i in store.infos(on_error="ignore")[0] if int(i.name) >= first_index]
    returns = [float(ep.rewards.sum()) for _, ep in store.iter_episodes(new, on_error="ignore")]
    return len(new), (sum(returns) / len(returns) if returns else None)


def run_loop(env_name: str, env_kwargs: dict[str, Any], run_dir: str | Path, model: dict[str, Any], loop: LoopConfig,
             agent: AgentConfig, seed: int = 0, device: str = "auto", precision: str = "auto",
             val_fraction: float = 0.1, progress: bool = True) -> dict[str, Any]:
    from worldsim.agents.baselines import score_with_baselines
    from worldsim.agents.dream_ppo import train_agent_in_dream
    from worldsim.data.collect import collect, describe_env
    from worldsim.data.store import EpisodeStore
    from worldsim.models.tokenizer import TokenizerConfig
    from worldsim.training.train_tokenizer import TokenizerTrainConfig, train_tokenizer
    from worldsim.training.train_world_model import WorldModelTrainConfig, train_world_model

    loop.check(agent)
    run_dir = Path(run_dir)
    data_dir, tok_path, wm_path, agent_path = run_dir / "data", run_dir / "tokenizer.pt", run_dir / "world_model.pt", run_dir / "agent.json"
    env_meta = describe_env(env_name, env_kwargs)  # an unknown game or env fails here, before anything is written
    n = loop.iterations
    # Learning-rate schedules laid out over the whole loop; each iteration stops part way (``until``).
    tok_train = dataclass_from_dict(TokenizerTrainConfig, {**model.get("tokenizer_train", {}), "seed": seed, "device": device,
                                                           "val_fraction": val_fraction, "precision": precision,
                                                           "steps": loop.tokenizer_target(n)})
    wm_train = dataclass_from_dict(WorldModelTrainConfig, {**model.get("world_model_train", {}), "seed": seed, "device": device,
                                                           "val_fraction": val_fraction, "precision": precision,
                                                           "steps": n * loop.world_model_steps_per_iteration})
    tok_cfg = dataclass_from_dict(TokenizerConfig, model["tokenizer"])
    wm_model = {k: v for k, v in model.items() if k not in ("name", "tokenizer", "tokenizer_train", "world_model_train")}
    fingerprint = {"env": env_name, "env_kwargs": env_kwargs, "model": model, "loop": asdict(loop), "agent": asdict(agent),
                   "seed": seed}
    run_dir.mkdir(parents=True, exist_ok=True)
    state = _read_state(run_dir, json.loads(json.dumps(fingerprint)))
    done = len(state["iterations"])
    # the loop's seed seeds its PPO too (dream agent and model-free baseline): before session 20 every loop
    # seed trained them from agent.seed alone, so the model-free baselines of seeds 0 / 1 / 2 were one agent
    agent = replace(agent, seed=agent.seed + seed)
    if done and progress:
        print(f"{run_dir}: {done} of {n} iterations done; continuing with iteration {done + 1}")

    for k in range(done + 1, n + 1):
        t = {"start": time.perf_counter()}
        print(f"\n== iteration {k}/{n}: collect to {loop.real_target(k)} real steps ==")
        if k == 1:
            policy, policy_kwargs = loop.first_policy, {}
        else:
            from worldsim.agents.actor import AgentActor

            policy, policy_kwargs = "agent", {"actor": AgentActor.from_file(agent_path), "epsilon": loop.epsilon}
        collect(env_name, env_kwargs, str(data_dir), loop.real_target(k), policy, policy_kwargs, loop.num_workers,
                seed=seed * 100 + k, progress=progress)
        t["collect"] = time.perf_counter()
        print(f"\n== iteration {k}/{n}: tokenizer to {loop.tokenizer_target(k)} steps ==")
        tok = train_tokenizer(data_dir, tok_path, tok_cfg, tok_train, env_meta=env_meta, run_dir=run_dir, progress=progress,
                              until=loop.tokenizer_target(k))
        t["tokenizer"] = time.perf_counter()
        print(f"\n== iteration {k}/{n}: world model to {k * loop.world_model_steps_per_iteration} steps ==")
        wm = train_world_model(data_dir, tok_path, wm_path, wm_model, wm_train, env_meta=env_meta, run_dir=run_dir,
                               progress=progress, until=k * loop.world_model_steps_per_iteration)
        t["world_model"] = time.perf_counter()
        print(f"\n== iteration {k}/{n}: agent to {k * loop.agent_steps_per_iteration} dream steps ==")
        rl = train_agent_in_dream(wm_path, agent_path, replace(agent, steps=k * loop.agent_steps_per_iteration),
                                  data_dir=data_dir, progress=progress, precision=precision, score=False)
        t["agent"] = time.perf_counter()

        store = EpisodeStore.open(data_dir)
        real_steps = store.total_steps()
        first = state["iterations"][-1]["next_episode"] if state["iterations"] else 0
        episodes, mean_return = _store_returns(store, first)
        scalars = {"real/steps": real_steps, "real/episodes_recorded": episodes,
                   "tok/val_psnr": tok.get("psnr", float("nan")), "wm/final_diffusion_loss": wm.get("final_diffusion_loss", float("nan")),
                   "rl/dream_steps": rl["dream_steps"], "rl/dream_steps_per_s": rl["dream_steps_per_s"]}
        if mean_return is not None:
            scalars["real/episode_return"] = mean_return
        if rl["dream_mean_episode_return"] is not None:
            scalars["rl/dream_episode_return"] = rl["dream_mean_episode_return"]
        seconds = {s: t[s] - t[p] for p, s in zip(["start", "collect", "tokenizer", "world_model"],
                                                  ["collect", "tokenizer", "world_model", "agent"])}
        record = {"iteration": k, "real_steps": real_steps, "next_episode": store.next_index(), "scalars": scalars,
                  "seconds": seconds}
        state["iterations"].append(record)
        _log(run_dir, state, record)  # first: a kill before loop.json repeats the (finished) iteration and its log
        atomic_write_json(run_dir / "loop.json", state)  # the iteration is complete from here on
    return score_with_baselines(run_dir, env_name, env_kwargs, env_meta, state["iterations"][-1]["real_steps"], agent,
                                loop.final_episodes, loop.model_free, loop.num_workers, progress)
