"""The latent agent: trained on the dream's latent frames, played on the real game through the world
model's tokenizer, one policy for both; its file, resume, scoring and refusals."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest

from worldsim.agents.actor import AgentActor
from worldsim.agents.agent_file import AgentFileError, read_agent
from worldsim.agents.latent import LatentEncoder, LatentObservation
from worldsim.agents.ppo import AgentConfig
from worldsim.cli import main
from worldsim.envs import make_env
from worldsim.sim.dream_env import DreamVectorEnv

TRAIN = ["progress=false", "agent.observation=latent", "agent.num_envs=2", "agent.n_steps=16", "agent.batch_size=32",
         "agent.horizon=8", "agent.eval_episodes=1", "agent.eval_max_steps=20"]


@pytest.fixture(scope="module")
def latent_agent(dream_agent, tiny_world_model):
    out = dream_agent("latent_agent", "agent.observation=latent")
    ckpt = out.with_name("world_model.pt")
    return {"agent": out, "world_model": ckpt, "data_dir": tiny_world_model["data_dir"]}


def test_record_names_latents_the_policy_and_the_world_model(latent_agent):
    record, _ = read_agent(latent_agent["agent"])
    assert record["policy"] == "LatentCnnPolicy" and record["observation"] == "latent"
    assert record["world_model"] == str(latent_agent["world_model"])
    # one latent frame of the tiny tokenizer (4 channels at 16x16), stacked 4 deep for the policy
    assert record["observation_space"]["shape"] == [4, 16, 16] and record["observation_space"]["dtype"] == "float32"
    assert record["frame_stack"] == 4 and record["policy_observation_space"]["shape"] == [16, 16, 16]
    score = json.loads(latent_agent["agent"].with_name("agent_eval.json").read_text())
    assert score["real"]["episodes"] == 1  # train-agent scored it on the real game through the tokenizer


def test_encoder_gives_the_latents_the_dream_starts_from(latent_agent, boxing_store):
    env = make_env("atari", game="boxing")
    frames = []
    obs, _ = env.reset(seed=3)
    for _ in range(4):
        frames.append(obs)
        obs, *_ = env.step(1)
    env.close()
    frames = np.stack(frames)
    dream = DreamVectorEnv(latent_agent["world_model"], num_envs=1, obs_type="latent", precision="fp32")
    start, _ = dream.reset(seed=0, options={"context_frames": frames[-dream.core.C:]})
    encoder = LatentEncoder(latent_agent["world_model"])
    np.testing.assert_allclose(encoder(frames[-1]), start[0], atol=1e-5)
    np.testing.assert_allclose(encoder(frames)[-1], start[0], atol=1e-5)  # batches encode frame by frame
    with pytest.raises(ValueError, match="encodes frames of shape"):
        encoder(np.zeros((32, 32, 3), np.uint8))


def test_one_policy_plays_real_frames_and_latents_alike(latent_agent):
    on_frames = AgentActor.from_file(latent_agent["agent"], deterministic=True)
    assert on_frames.encoder is not None
    dream = DreamVectorEnv(latent_agent["world_model"], num_envs=2, obs_type="latent", data_dir=latent_agent["data_dir"])
    spaces = SimpleNamespace(observation_space=dream.single_observation_space, action_space=dream.single_action_space)
    on_latents = AgentActor.from_file(latent_agent["agent"], env=spaces, where="the dream", deterministic=True)
    assert on_latents.encoder is None and on_latents.channels_first
    rng = np.random.default_rng(0)
    for _ in range(6):  # through the frame stack: same actions from frames and from their latents
        frames = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
        np.testing.assert_array_equal(on_frames(frames), on_latents(on_frames.encoder(frames)))
    np.testing.assert_array_equal(on_frames.stack, on_latents.stack)
    assert on_frames.stack.shape == (3, 16, 16, 16)  # (n, k·c, h, w): stacked as VecFrameStack "first" does


def test_latent_observation_wrapper_is_a_checked_gymnasium_env(latent_agent):
    from gymnasium.utils.env_checker import check_env

    encoder = LatentEncoder(latent_agent["world_model"])
    env = LatentObservation(make_env("atari", game="boxing"), encoder)
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 16, 16) and obs.dtype == np.float32 and env.observation_space.contains(obs)
    env.close()
    with pytest.raises(ValueError, match="encodes"):
        LatentObservation(make_env("atari", game="boxing", frame_size=32), encoder)


def test_evaluate_agent_scores_it_on_the_real_game_and_in_its_latent_dream(latent_agent):
    assert main(["evaluate-agent", f"path={latent_agent['agent']}", "episodes=2", "max_steps=20", "num_workers=2",
                 "dream_episodes=2", "progress=false"]) == 0
    result = json.loads(latent_agent["agent"].with_name("agent_evaluation.json").read_text())
    assert result["real"]["lengths"] == [20, 20] and len(result["dream"]["returns"]) == 2
    assert "dream_to_real_gap" in result


def test_latent_agent_resumes(latent_agent, tmp_path, capsys):
    shutil.copy(latent_agent["world_model"], tmp_path / "world_model.pt")
    for name in ("agent.json", "agent.safetensors"):
        shutil.copy(latent_agent["agent"].with_name(name), tmp_path / name)
    record = json.loads((tmp_path / "agent.json").read_text())
    record["world_model"] = str(tmp_path / "world_model.pt")
    (tmp_path / "agent.json").write_text(json.dumps(record))
    assert main(["train-agent", f"checkpoint={tmp_path / 'world_model.pt'}", f"data_dir={latent_agent['data_dir']}",
                 f"out={tmp_path / 'agent.json'}", "agent.steps=64", "agent.eval_episodes=1", *TRAIN[1:],
                 "progress=true"]) == 0
    assert "resuming the agent" in capsys.readouterr().out
    assert read_agent(tmp_path / "agent.json")[0]["num_timesteps"] == 64


def test_refusals_say_what_to_do(latent_agent, tmp_path):
    for name in ("agent.json", "agent.safetensors"):
        shutil.copy(latent_agent["agent"].with_name(name), tmp_path / name)
    with pytest.raises(FileNotFoundError, match="world_model=PATH"):
        AgentActor.from_file(tmp_path / "agent.json", world_model=tmp_path / "gone.pt")
    record = json.loads((tmp_path / "agent.json").read_text())
    record["observation_space"]["shape"] = [8, 16, 16]  # as if trained through another tokenizer
    (tmp_path / "agent.json").write_text(json.dumps(record))
    with pytest.raises(AgentFileError, match=r"latent agent for latents \[8, 16, 16\].*gives \[4, 16, 16\]"):
        AgentActor.from_file(tmp_path / "agent.json")
    spaces = SimpleNamespace(observation_space=gym.spaces.Box(0, 255, (64, 64, 3), np.uint8),
                             action_space=gym.spaces.Discrete(3))
    with pytest.raises(AgentFileError, match="action_space"):  # boxing has 18 actions
        AgentActor.from_file(latent_agent["agent"], env=spaces)
    with pytest.raises(ValueError, match="agent.observation must be 'pixels'"):
        AgentConfig(observation="latents")


def test_model_free_baseline_stays_on_pixels(tmp_path):
    from worldsim.agents.real_ppo import train_model_free
    from worldsim.data.collect import describe_env

    meta = describe_env("atari", {"game": "pong"})
    cfg = AgentConfig(steps=32, num_envs=2, n_steps=16, batch_size=32, observation="latent", frame_stack=1)
    train_model_free("atari", {"game": "pong"}, meta, tmp_path / "agent.json", cfg, progress=False)
    record, _ = read_agent(tmp_path / "agent.json")
    assert record["policy"] == "CnnPolicy" and record["agent_config"]["observation"] == "pixels"
