"""Agent files: safetensors + JSON, round trips, exact resume of the learner, and refusals (pickles,
tampered or damaged files, agents for other spaces) that say what is wrong."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from worldsim.agents.actor import AgentActor, stack_frames
from worldsim.agents.agent_file import (AgentFileError, agent_paths, check_spaces, load_policy_record, read_agent,
                                        restore_ppo, save_agent, space_from_record, space_record)


class TinyImageEnv(gym.Env):
    """A 36×36 RGB env (the smallest NatureCNN takes) whose reward favours action 1."""

    observation_space = gym.spaces.Box(0, 255, (36, 36, 3), np.uint8)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.integers(0, 256, (36, 36, 3), dtype=np.uint8), {}

    def step(self, action):
        self.t += 1
        obs = self.np_random.integers(0, 256, (36, 36, 3), dtype=np.uint8)
        return obs, float(action == 1), False, self.t >= 8, {}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from stable_baselines3.common.env_util import make_vec_env

    venv = make_vec_env(TinyImageEnv, n_envs=2, seed=0)
    model = PPO("CnnPolicy", venv, n_steps=16, batch_size=16, n_epochs=1, seed=0, device="cpu", verbose=0)
    model.learn(64)
    path = save_agent(tmp_path_factory.mktemp("agent") / "agent.json", model, {"env": {"env": "tiny"}})
    return model, path, venv


def test_files_and_record(trained):
    model, path, _ = trained
    record_path, weights_path = agent_paths(path)
    assert record_path == path and weights_path.exists() and weights_path.suffix == ".safetensors"
    record = json.loads(path.read_text())
    assert record["format"] == "worldsim-agent" and record["algo"] == "PPO" and record["policy"] == "CnnPolicy"
    assert record["observation_space"] == {"type": "Box", "shape": [36, 36, 3], "dtype": "uint8", "low": 0.0, "high": 255.0}
    assert record["action_space"] == {"type": "Discrete", "n": 3}
    assert record["num_timesteps"] == model.num_timesteps and record["hyperparameters"]["n_steps"] == 16
    assert record["env"] == {"env": "tiny"}
    assert agent_paths(path.with_suffix(""))[0] == path


def test_loaded_policy_acts_as_the_saved_one(trained):
    model, path, _ = trained
    policy, record = load_policy_record(path, env=TinyImageEnv())
    assert record["frame_stack"] == 1
    obs = np.random.default_rng(0).integers(0, 256, (5, 36, 36, 3), dtype=np.uint8)
    np.testing.assert_array_equal(policy.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    for k, v in model.policy.state_dict().items():
        assert torch.equal(policy.state_dict()[k], v), k


def test_restored_learner_has_weights_optimiser_and_step_count(trained):
    model, path, venv = trained
    again = restore_ppo(path, venv)
    assert again.num_timesteps == model.num_timesteps
    for k, v in model.policy.state_dict().items():
        assert torch.equal(again.policy.state_dict()[k], v), k
    a, b = model.policy.optimizer.state_dict(), again.policy.optimizer.state_dict()
    assert a["state"].keys() == b["state"].keys()
    for i in a["state"]:
        for key in a["state"][i]:
            assert torch.equal(torch.as_tensor(a["state"][i][key]), torch.as_tensor(b["state"][i][key])), (i, key)
    again.learn(32, reset_num_timesteps=False)  # and it keeps learning
    assert again.num_timesteps >= model.num_timesteps + 32


def test_an_agent_for_other_spaces_is_refused_with_the_difference(trained):
    _, path, _ = trained

    class Other(TinyImageEnv):
        action_space = gym.spaces.Discrete(18)

    with pytest.raises(AgentFileError, match=r"action_space: the agent has .*'n': 3.*, Boxing has .*'n': 18"):
        load_policy_record(path, env=Other(), where="Boxing")


# ----------------------------------------------------------------------------- frame stacks
@pytest.fixture(scope="module")
def stacked(tmp_path_factory):
    from stable_baselines3.common.env_util import make_vec_env

    venv = stack_frames(make_vec_env(TinyImageEnv, n_envs=2, seed=0), 3)
    model = PPO("CnnPolicy", venv, n_steps=16, batch_size=16, n_epochs=1, seed=0, device="cpu", verbose=0)
    model.learn(32)
    return model, save_agent(tmp_path_factory.mktemp("stacked") / "agent.json", model), venv


def test_a_stacked_agent_records_one_frame_and_the_stack(stacked):
    model, path, _ = stacked
    record = json.loads(path.read_text())
    assert record["frame_stack"] == 3 and record["observation_space"]["shape"] == [36, 36, 3]
    assert record["policy_observation_space"]["shape"] == [9, 36, 36]  # stacked, then channels first
    actor = AgentActor.from_file(path, env=TinyImageEnv())  # checked against one frame of the env
    assert actor.frame_stack == 3


def test_actor_stacks_frames_as_vec_frame_stack_does(stacked):
    """Fed the same games, the actor's stacks equal VecFrameStack's, through an episode restart."""
    from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack

    model, path, _ = stacked
    actor = AgentActor.from_file(path, deterministic=True)
    venv = DummyVecEnv([TinyImageEnv, TinyImageEnv])
    venv.seed(5)
    framed = VecFrameStack(venv, 3, channels_order="last")
    stack_obs = framed.reset()
    frames = np.stack([stack_obs[i, ..., -3:] for i in range(2)])
    seen = []
    actor.policy = type("Spy", (), {"predict": lambda self, x, deterministic: (seen.append(x.copy()) or
                                                                                 np.zeros(len(x), int), None)})()
    for t in range(12):  # TinyImageEnv ends every 8 steps: one restart per game
        actor(frames)
        np.testing.assert_array_equal(seen[-1], stack_obs, err_msg=f"step {t}")
        stack_obs, _, dones, infos = framed.step(np.zeros(2, int))
        frames = stack_obs[..., -3:]
        for i in np.flatnonzero(dones):
            actor.episode_done(int(i))


def test_actor_plays_single_frames_and_resets(stacked):
    _, path, _ = stacked
    actor = AgentActor.from_file(path)
    frame = np.full((36, 36, 3), 7, np.uint8)
    assert isinstance(actor(frame), int) and actor.stack[0, ..., :6].max() == 0 and actor.stack[0, ..., 6:].min() == 7
    actor(frame)
    assert actor.stack[0, ..., :3].max() == 0 and actor.stack[0, ..., 3:].min() == 7
    actor.reset()
    actor(frame)
    assert actor.stack[0, ..., :6].max() == 0


def test_resuming_with_another_frame_stack_says_how(stacked):
    from stable_baselines3.common.env_util import make_vec_env

    _, path, _ = stacked
    with pytest.raises(AgentFileError, match=r"stacks 3 frames, and this run asks for 1.*agent.frame_stack=3"):
        restore_ppo(path, make_vec_env(TinyImageEnv, n_envs=2, seed=0))
    again = restore_ppo(path, stack_frames(make_vec_env(TinyImageEnv, n_envs=2, seed=0), 3))
    assert again.num_timesteps == stacked[0].num_timesteps


def test_space_records_round_trip():
    for space in (gym.spaces.Box(0, 255, (64, 64, 3), np.uint8), gym.spaces.Box(-np.inf, np.inf, (16, 16, 16), np.float32),
                  gym.spaces.Discrete(18)):
        back = space_from_record(json.loads(json.dumps(space_record(space))))
        assert back == space
    check_spaces({"observation_space": space_record(TinyImageEnv.observation_space),
                  "action_space": space_record(TinyImageEnv.action_space)},
                 TinyImageEnv.observation_space, TinyImageEnv.action_space, "it")


class Boom:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_loading_never_unpickles(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "agent.zip"
    evil.write_bytes(pickle.dumps(Boom(marker)))
    with pytest.raises(FileNotFoundError, match="holds pickles"):
        read_agent(evil)
    (tmp_path / "agent.json").write_bytes(pickle.dumps(Boom(marker)))
    with pytest.raises(AgentFileError, match="not a readable agent record"):
        read_agent(tmp_path / "agent.json")
    assert not marker.exists()


def test_tampered_damaged_and_foreign_files(trained, tmp_path):
    _, path, _ = trained
    record, weights = agent_paths(path)
    copy, copy_weights = tmp_path / "agent.json", tmp_path / "agent.safetensors"
    copy.write_bytes(record.read_bytes())
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF
    copy_weights.write_bytes(bytes(blob))
    with pytest.raises(AgentFileError, match="checksum differs"):
        read_agent(copy)
    copy_weights.unlink()
    with pytest.raises(AgentFileError, match="missing"):
        read_agent(copy)
    copy_weights.write_bytes(weights.read_bytes())
    data = json.loads(record.read_text())
    copy.write_text(json.dumps({**data, "version": 99}))
    with pytest.raises(AgentFileError, match="version 99"):
        read_agent(copy)
    copy.write_text(json.dumps({**data, "format": "something-else"}))
    with pytest.raises(AgentFileError, match="not a worldsim agent record"):
        read_agent(copy)
    copy.write_text(json.dumps({**data, "policy": "os.system"}))
    with pytest.raises(AgentFileError, match="unsupported agent"):
        read_agent(copy)
    copy.write_text(record.read_text()[:40])
    with pytest.raises(AgentFileError, match="not a readable agent record"):
        read_agent(copy)
    with pytest.raises(FileNotFoundError, match="Train one"):
        read_agent(tmp_path / "nothing.json")


def test_a_save_killed_at_any_step_leaves_a_readable_agent(tmp_path, monkeypatch):
    """save_agent writes the weights as pending, then the record, then renames the weights: killed
    after any step, the directory holds a readable agent (the old one or the new one), never a record
    whose weights are gone."""
    from stable_baselines3.common.env_util import make_vec_env

    import worldsim.agents.agent_file as agent_file

    model = PPO("CnnPolicy", make_vec_env(TinyImageEnv, n_envs=2, seed=0), n_steps=16, batch_size=16, seed=0,
                device="cpu", verbose=0)
    path = tmp_path / "agent.json"
    save_agent(path, model, {"which": "old"})
    old_weights = agent_paths(path)[1].read_bytes()
    key = next(iter(model.policy.state_dict()))
    model.num_timesteps += 64  # the newer save differs in record and weights
    with torch.no_grad():
        model.policy.state_dict()[key].add_(1.0)

    real_replace, weights = agent_file.os.replace, agent_paths(path)[1]

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    def killed_at_the_weights_rename(src, dst):
        if Path(dst) == weights:
            raise KeyboardInterrupt
        return real_replace(src, dst)

    for die_at in ("atomic_write_json", "replace"):  # killed before the record / before the rename
        with monkeypatch.context() as m:
            if die_at == "replace":
                m.setattr(agent_file.os, "replace", killed_at_the_weights_rename)
            else:
                m.setattr(agent_file, "atomic_write_json", killed)
            with pytest.raises(KeyboardInterrupt):
                save_agent(path, model, {"which": "new"})
        record, tensors = read_agent(path)
        assert agent_paths(path)[1].read_bytes() == old_weights  # the rename never happened
        if die_at == "atomic_write_json":
            assert record["which"] == "old" and record["num_timesteps"] == 0
        else:  # the new record, and its weights still pending
            assert record["which"] == "new" and record["num_timesteps"] == 64
            assert torch.equal(tensors[f"policy.{key}"], model.policy.state_dict()[key].cpu())
    save_agent(path, model, {"which": "new"})  # the next save completes and clears the pending file
    assert read_agent(path)[0]["which"] == "new"
    assert agent_paths(path)[1].read_bytes() != old_weights
    assert not agent_file.pending_weights(agent_paths(path)[1]).exists()
