"""`worldsim evaluate-agent`: fixed seeds in parallel workers give the same scores as one worker,
bootstrap intervals, the random baseline and the dream return; HNS only under the Atari 100k protocol."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from worldsim.agents.evaluate import AgentEvalConfig, _hns, bootstrap_ci, evaluate_agent, play_dream, protocol_of
from worldsim.cli import main


@pytest.fixture(scope="module")
def agent(dream_agent):
    return dream_agent("agent_eval")


def test_scores_do_not_depend_on_the_number_of_workers(agent):
    cfg = dict(episodes=3, max_steps=25, dream_episodes=0, random_baseline=False)
    one = evaluate_agent(agent, AgentEvalConfig(num_workers=1, **cfg))
    two = evaluate_agent(agent, AgentEvalConfig(num_workers=2, **cfg))
    assert one["real"]["returns"] == two["real"]["returns"] and one["real"]["seeds"] == [10000, 10001, 10002]
    assert one["real"]["lengths"] == [25, 25, 25]


def test_cli_writes_real_random_and_dream_scores(agent, capsys):
    assert main(["evaluate-agent", f"path={agent}", "episodes=2", "max_steps=20", "num_workers=1",
                 "dream_episodes=2"]) == 0
    result = json.loads(agent.with_name("agent_evaluation.json").read_text())
    real = result["real"]
    assert real["episodes"] == 2 and real["ci95"][0] <= real["mean_return"] <= real["ci95"][1]
    assert result["random"]["episodes"] == 2
    assert result["dream"]["episodes"] == 2 and result["dream"]["horizon"] == 8
    assert len(result["dream"]["lengths"]) == 2 and all(1 <= n <= 8 for n in result["dream"]["lengths"])
    rand = result["dream"]["random"]  # a random policy in the same two dreams, paired with the agent
    assert len(rand["returns"]) == 2 and all(1 <= n <= 8 for n in rand["lengths"])
    assert result["dream"]["agent_minus_random"]["mean"] == pytest.approx(result["dream"]["mean_return"] - rand["mean_return"])
    assert result["dream_to_real_gap"] == pytest.approx(result["dream"]["mean_return"] - real["mean_return"])
    assert result["protocol"] == "atari_sticky" and result["hns"] is None and "not the Atari 100k" in result["hns_note"]
    out = capsys.readouterr().out
    assert "real atari_sticky" in out and "in the same dreams" in out


def test_evaluate_agent_bad_input(agent, tmp_path, capsys):
    assert main(["evaluate-agent"]) == 1
    assert "say which agent" in capsys.readouterr().err
    assert main(["evaluate-agent", f"path={tmp_path / 'none.json'}"]) == 1
    assert "No agent record" in capsys.readouterr().err
    assert main(["evaluate-agent", f"path={agent}", "episodes=0"]) == 1
    assert "episodes must be >= 1" in capsys.readouterr().err


def test_bootstrap_interval_and_hns_rules():
    lo, hi = bootstrap_ci([1.0, 2.0, 3.0, 4.0, 100.0], seed=0)
    assert lo < np.mean([1, 2, 3, 4, 100]) < hi and lo >= 1.0 and hi <= 100.0
    assert bootstrap_ci([5.0, 5.0, 5.0]) == (5.0, 5.0)
    assert protocol_of("atari", {"repeat_action_probability": 0.0, "noop_max": 30, "frame_skip": 4}) == "atari100k"
    assert protocol_of("atari", {"repeat_action_probability": 0.25, "noop_max": 0, "frame_skip": 4}) == "atari_sticky"
    real = {"mean_return": 12.1, "ci95": [0.1, 12.1]}
    assert _hns("boxing", "atari100k", real) == {"mean": pytest.approx(1.0), "ci95": [0.0, pytest.approx(1.0)]}
    assert _hns("boxing", "atari_sticky", real) is None and _hns("tetris", "atari100k", real) is None


def test_train_agent_resumes_from_its_agent_file(agent, tiny_world_model, tmp_path, capsys):
    import json as _json

    for name in ("agent.json", "agent.safetensors", "world_model.pt"):
        shutil.copy(agent.with_name(name), tmp_path / name)
    out = tmp_path / "agent.json"
    before = _json.loads(out.read_text())["num_timesteps"]
    assert main(["train-agent", f"checkpoint={tmp_path / 'world_model.pt'}", f"data_dir={tiny_world_model['data_dir']}",
                 f"out={out}", "agent.steps=64", "agent.num_envs=2", "agent.n_steps=16", "agent.batch_size=32",
                 "agent.horizon=8", "agent.eval_episodes=1", "agent.eval_max_steps=20", "agent.ckpt_every=16"]) == 0
    assert f"resuming the agent from {out} at {before} of 64 dream steps" in capsys.readouterr().out
    assert _json.loads(out.read_text())["num_timesteps"] >= 64 > before


def test_an_agent_killed_after_a_periodic_save_resumes_to_the_same_step_count(tiny_world_model, tmp_path, monkeypatch):
    """The periodic save is the resume point: it falls between rollouts, so the rerun collects the same
    rollouts as an uninterrupted run and stops at the same step count (a save in mid-rollout made a
    resumed loop overshoot its agent budget); a rerun over the finished agent reports its figures."""
    import worldsim.agents.ppo as ppo
    from stable_baselines3.common.vec_env import VecMonitor

    from worldsim.sim.dream_env import DreamVectorEnv
    from worldsim.sim.sb3 import DreamSB3VecEnv

    cfg = ppo.AgentConfig(steps=96, num_envs=2, n_steps=16, batch_size=32, horizon=8, ckpt_every=16)

    def venv():
        dream = DreamVectorEnv(tiny_world_model["world_model"], num_envs=2, data_dir=tiny_world_model["data_dir"], horizon=8)
        return VecMonitor(DreamSB3VecEnv(dream))

    real_save, saved = ppo.save_agent, []

    def save_then_die(out, agent, extra):  # the process is killed right after its first periodic save
        real_save(out, agent, extra)
        saved.append(int(agent.num_timesteps))
        raise KeyboardInterrupt

    monkeypatch.setattr(ppo, "save_agent", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        ppo.train_ppo(venv(), tmp_path / "agent.json", cfg, {}, progress=False)
    monkeypatch.setattr(ppo, "save_agent", real_save)
    assert saved and saved[0] % (cfg.num_envs * cfg.n_steps) == 0 and 0 < saved[0] < cfg.steps
    resumed = ppo.train_ppo(venv(), tmp_path / "agent.json", cfg, {}, progress=False)
    whole = ppo.train_ppo(venv(), tmp_path / "whole.json", cfg, {}, progress=False)
    assert resumed.steps_before == saved[0]
    assert resumed.agent.num_timesteps == whole.agent.num_timesteps == cfg.steps
    # a rerun over a finished agent reports the figures of the call that finished it, not zeros
    again = ppo.train_ppo(venv(), tmp_path / "whole.json", cfg, {}, progress=False)
    assert whole.mean_episode_return is not None and whole.seconds > 0
    assert (again.steps_before, again.seconds, again.mean_episode_return) == (whole.steps_before, whole.seconds,
                                                                              whole.mean_episode_return)


class _ScriptedDreams:
    """Three dreams that end after 2, 4 and 3 steps (then start over), paying 1 per step."""

    num_envs = 3

    def __init__(self) -> None:
        self.ends, self.t = np.array([2, 4, 3]), np.zeros(3, dtype=int)

    def reset(self, seed=None):
        self.t[:] = 0
        return np.zeros((3, 1)), {}

    def step(self, actions):
        self.t += 1
        term = self.t == self.ends
        self.t[term] = 0  # autoreset
        return np.zeros((3, 1)), np.ones(3), term, np.zeros(3, dtype=bool), {}


def test_play_dream_counts_each_dream_first_episode_only():
    class Actor:
        def __init__(self) -> None:
            self.done: list[int] = []

        def __call__(self, obs):
            return np.zeros(len(obs), dtype=int)

        def episode_done(self, i):
            self.done.append(i)

    actor = Actor()
    returns, lengths = play_dream(_ScriptedDreams(), actor, seed=0)
    assert lengths.tolist() == [2, 4, 3] and returns.tolist() == [2.0, 4.0, 3.0]
    assert sorted(set(actor.done)) == [0, 1, 2]  # every finished dream clears its frame stack


def test_every_policy_of_a_dream_comparison_plays_the_same_dreams(tiny_world_model):
    """A reset with the same seed gives the same contexts and noise, so a paired comparison of two
    policies (the agent and the random policy in `dream_return`) only differs by their actions."""
    from worldsim.agents.evaluate import RandomActor
    from worldsim.sim.dream_env import DreamVectorEnv

    envs = DreamVectorEnv(tiny_world_model["world_model"], num_envs=3, data_dir=tiny_world_model["data_dir"], horizon=6)
    first = play_dream(envs, RandomActor(envs.single_action_space.n, 0), seed=5)
    again = play_dream(envs, RandomActor(envs.single_action_space.n, 0), seed=5)
    other = play_dream(envs, RandomActor(envs.single_action_space.n, 1), seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], other[0])  # other actions, other dreams
