"""MiniWorld adapter: Gymnasium/SB3 checks, frame sizes, ground-truth info, seeding, errors."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("PYGLET_HEADLESS", "True")  # before pyglet is imported, as the adapter does
pytest.importorskip("miniworld")

import gymnasium as gym  # noqa: E402
from gymnasium.utils.env_checker import check_env  # noqa: E402
from stable_baselines3.common.env_checker import check_env as sb3_check_env  # noqa: E402

import worldsim  # noqa: E402,F401  (registers worldsim/* ids)
from worldsim.envs.miniworld import ENTITY_TYPES, MiniWorldEnv  # noqa: E402

STATE_SHAPES = {
    "state/agent_pos": (3,),
    "state/agent_dir": (),
    "state/entity_pos": ("E", 3),
    "state/entity_type": ("E",),
    "state/entity_color": ("E", 3),
    "state/entity_present": ("E",),
}


def rollout(env: MiniWorldEnv, seed: int, steps: int = 20) -> list[np.ndarray]:
    obs, _ = env.reset(seed=seed)
    frames = [obs]
    rng = np.random.default_rng(0)
    for _ in range(steps):
        obs, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        frames.append(obs)
        if terminated or truncated:
            obs, _ = env.reset()
            frames.append(obs)
    return frames


def test_gymnasium_and_sb3_check_env():
    env = gym.make("worldsim/MiniWorld-v0", frame_size=64).unwrapped  # unwrapped, with a spec
    check_env(env)
    sb3_check_env(env)
    env.close()


@pytest.mark.parametrize("frame_size", [32, 64])
def test_observation_shape(frame_size):
    env = MiniWorldEnv(frame_size=frame_size)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (frame_size, frame_size, 3) and obs.dtype == np.uint8
    assert env.observation_space.contains(obs)
    obs, *_ = env.step(2)
    assert obs.shape == (frame_size, frame_size, 3)
    assert env.action_meanings == ["turn_left", "turn_right", "move_forward"]
    env.close()


def test_info_ground_truth_has_stable_shapes():
    env = MiniWorldEnv(task="MiniWorld-PickupObjects-v0", frame_size=32)
    _, info = env.reset(seed=3)
    num_entities = info["state/entity_type"].shape[0]
    assert num_entities == 5
    assert all(0 <= t < len(ENTITY_TYPES) for t in info["state/entity_type"])
    assert {ENTITY_TYPES[t] for t in info["state/entity_type"]} <= {"Box", "Ball", "Key"}
    assert np.all(info["state/entity_color"].max(axis=1) > 0)  # coloured objects
    infos = [info]
    for a in [0, 2, 2, 4, 1, 2, 4, 3]:
        infos.append(env.step(a)[4])
    for info in infos:
        for key, shape in STATE_SHAPES.items():
            expected = tuple(num_entities if s == "E" else s for s in shape)
            assert info[key].shape == expected, key
            assert info[key].dtype == (np.int32 if key == "state/entity_type" else np.float32), key
    positions = np.stack([i["state/agent_pos"] for i in infos])
    assert np.ptp(positions[:, [0, 2]], axis=0).max() > 0  # the agent moved
    assert np.all(positions[:, 1] == 0)
    env.close()


def test_agent_dir_follows_turns():
    env = MiniWorldEnv(frame_size=32)
    _, info = env.reset(seed=0)
    _, _, _, _, info2 = env.step(0)  # turn_left: +15 degrees
    turn = (info2["state/agent_dir"] - info["state/agent_dir"] + np.pi) % (2 * np.pi) - np.pi
    assert turn == pytest.approx(np.deg2rad(15), abs=1e-4)
    env.close()


def test_same_seed_same_frames_different_seed_differs():
    env_a, env_b = MiniWorldEnv(frame_size=32), MiniWorldEnv(frame_size=32)
    frames_a = rollout(env_a, seed=7)
    frames_b = rollout(env_b, seed=7)  # env_b's reset replaced env_a's walls in OpenGL
    assert all(np.array_equal(x, y) for x, y in zip(frames_a, frames_b))
    assert all(np.array_equal(x, y) for x, y in zip(frames_a, rollout(env_a, seed=7)))
    frames_c = rollout(env_b, seed=8)
    assert not all(np.array_equal(x, y) for x, y in zip(frames_a, frames_c))
    env_a.close()
    env_b.close()


def test_two_live_envs_render_their_own_world():
    env_a, env_b = MiniWorldEnv(frame_size=32), MiniWorldEnv(task="Hallway", frame_size=32)
    env_a.reset(seed=1)
    alone = [env_a.step(a)[0] for a in (0, 2, 1)]
    env_a.reset(seed=1)
    env_b.reset(seed=2)
    interleaved = []
    for a in (0, 2, 1):
        env_b.step(2)
        interleaved.append(env_a.step(a)[0])
    assert all(np.array_equal(x, y) for x, y in zip(alone, interleaved))
    env_a.close()
    env_b.close()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"task": "MiniWorld-Nope-v0"}, "MiniWorld-OneRoom-v0"),
        ({"frame_size": 4}, "frame_size"),
        ({"max_episode_steps": 0}, "max_episode_steps"),
        ({"render_mode": "human"}, "rgb_array"),
    ],
)
def test_bad_args_raise_helpful_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MiniWorldEnv(**kwargs)


def test_gym_make_short_task_and_time_limit():
    env = gym.make("worldsim/MiniWorld-v0", task="oneroom", frame_size=(32, 48), max_episode_steps=3)
    obs, info = env.reset(seed=0)
    assert obs.shape == (32, 48, 3)
    assert env.unwrapped.task == "MiniWorld-OneRoom-v0"
    assert set(STATE_SHAPES) <= set(info)
    truncated = [env.step(0)[3] for _ in range(3)]
    assert truncated == [False, False, True]
    with pytest.raises(ValueError, match="outside the action space"):
        env.unwrapped.step(7)
    env.close()


def test_wall_walk_task_walks_back_and_passes_the_checkers():
    from worldsim.evaluation.probes import SuiteConfig

    env = MiniWorldEnv(task="WallWalk", frame_size=32)  # worldsim's own task, by its short name too
    try:
        assert env.task == "MiniWorld-WallWalk-v0"
        assert env.action_meanings == ["turn_left", "turn_right", "move_forward", "move_back"]
        assert env.motion[3] == (-env.motion[2][0], 0.0) and env.motion[2][0] > 0
        _, info = env.reset(seed=0)
        assert info["state/agent_pos"][2] > 0.5 > -0.5 > info["state/entity_pos"][0][2]  # the wall between them
        p0 = info["state/agent_pos"].copy()
        env.step(2)
        info = env.step(3)[4]
        assert np.allclose(info["state/agent_pos"], p0, atol=1e-5)  # forward then back: the same place
        check_env(env, skip_render_check=True)
    finally:
        env.close()
    assert SuiteConfig.for_task("MiniWorld-WallWalk-v0").walk_by and not SuiteConfig.for_task("MiniWorld-WallWalk-v0").permanence
    assert SuiteConfig.for_task("MiniWorld-OneRoom-v0") == SuiteConfig()
