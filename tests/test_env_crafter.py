"""Crafter adapter: Gymnasium/SB3 checks, frame sizes, ground-truth info, seeding, errors."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("crafter")

import gymnasium as gym  # noqa: E402
from gymnasium.utils.env_checker import check_env  # noqa: E402
from stable_baselines3.common.env_checker import check_env as sb3_check_env  # noqa: E402

import worldsim  # noqa: E402,F401  (registers worldsim/* ids)
from worldsim.envs.crafter import ACHIEVEMENTS, INVENTORY_KEYS, CrafterEnv  # noqa: E402

# Crafter generates its world in pure Python (~2 s for the default 64×64 area on a busy CPU);
# a 16×16 area keeps each reset near 0.15 s.
SMALL = {"area": (16, 16)}

STATE_SHAPES = {
    "state/player_pos": (2,),
    "state/player_facing": (2,),
    "state/player_sleeping": (),
    "state/daylight": (),
    "state/inventory": (len(INVENTORY_KEYS),),
    "state/achievements": (len(ACHIEVEMENTS),),
}


def rollout(env: CrafterEnv, seed: int, steps: int = 20) -> list[np.ndarray]:
    obs, _ = env.reset(seed=seed)
    frames = [obs]
    rng = np.random.default_rng(0)
    for _ in range(steps):
        frames.append(env.step(int(rng.integers(env.action_space.n)))[0])
    return frames


def test_gymnasium_and_sb3_check_env():
    env = gym.make("worldsim/Crafter-v0", **SMALL).unwrapped  # unwrapped, with a spec
    check_env(env)
    sb3_check_env(env)


@pytest.mark.parametrize("frame_size", [32, 64])
def test_observation_shape(frame_size):
    env = CrafterEnv(frame_size=frame_size, **SMALL)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (frame_size, frame_size, 3) and obs.dtype == np.uint8
    obs, *_ = env.step(0)
    assert obs.shape == (frame_size, frame_size, 3)
    assert env.action_meanings[:3] == ["noop", "move_left", "move_right"] and env.action_space.n == 17


def test_info_ground_truth_has_stable_shapes():
    env = CrafterEnv(**SMALL)
    _, info = env.reset(seed=0)
    infos = [info] + [env.step(a)[4] for a in [1, 1, 3, 5, 5, 2, 4, 5, 0, 6]]
    for info in infos:
        for key, shape in STATE_SHAPES.items():
            assert info[key].shape == shape and info[key].dtype == np.float32, key
    first = infos[0]
    assert first["state/player_pos"].tolist() == [8, 8]  # crafter starts at the centre of the area
    assert first["state/inventory"][:4].tolist() == [9, 9, 9, 9]  # health, food, drink, energy
    assert first["state/achievements"].sum() == 0
    assert not np.array_equal(infos[0]["state/player_pos"], infos[2]["state/player_pos"])


def test_same_seed_same_frames_different_seed_differs():
    env_a, env_b = CrafterEnv(**SMALL), CrafterEnv(**SMALL)
    frames_a = rollout(env_a, seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(frames_a, rollout(env_b, seed=5)))
    assert all(np.array_equal(x, y) for x, y in zip(frames_a, rollout(env_a, seed=5)))
    assert not all(np.array_equal(x, y) for x, y in zip(frames_a, rollout(env_b, seed=6)))


def test_length_truncates():
    env = CrafterEnv(length=3, **SMALL)
    env.reset(seed=0)
    assert [env.step(0)[3] for _ in range(3)] == [False, False, True]


def test_death_terminates():
    env = CrafterEnv(length=None, **SMALL)
    env.reset(seed=0)
    env._env._player.health = 0  # kill the player: the next step reports death
    _, _, terminated, truncated, info = env.step(0)
    assert terminated and not truncated
    assert info["state/inventory"][0] == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"frame_size": 4}, "frame_size"),
        ({"frame_size": 8, "view": (9, 9)}, "smaller than the view"),
        ({"view": (4, 4)}, "inventory"),
        ({"area": (64,)}, "area"),
        ({"length": 0}, "length"),
        ({"render_mode": "human"}, "rgb_array"),
    ],
)
def test_bad_args_raise_helpful_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CrafterEnv(**kwargs)


def test_gym_make():
    env = gym.make("worldsim/Crafter-v0", frame_size=32, render_mode="rgb_array", **SMALL)
    obs, info = env.reset(seed=0)
    assert obs.shape == (32, 32, 3)
    assert set(STATE_SHAPES) <= set(info)
    assert np.array_equal(env.render(), obs)
    env.close()
