"""Atari adapter: Gymnasium/SB3 checks, frame sizes, seeding, options and clear errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import worldsim  # noqa: F401  (registers worldsim/* ids)
from worldsim.envs import make_env
from worldsim.envs.atari import AtariEnv


def rollout(env: gym.Env, seed: int, actions: list[int]) -> list[np.ndarray]:
    obs, _ = env.reset(seed=seed)
    frames = [obs]
    for a in actions:
        obs, *_ = env.step(a)
        frames.append(obs)
    return frames


@pytest.mark.filterwarnings("ignore:.*not having a spec")
def test_check_env_unwrapped_boxing():
    env = AtariEnv(game="boxing")
    check_env(env)
    sb3_check_env(env)
    env.close()


def test_check_env_through_gymnasium_make_pong():
    env = gym.make("worldsim/Atari-v0", game="pong")
    assert env.spec is not None and env.spec.id == "worldsim/Atari-v0"
    check_env(env.unwrapped)
    sb3_check_env(env.unwrapped)
    assert env.unwrapped.game == "pong"
    env.close()


@pytest.mark.parametrize("frame_size, shape", [(64, (64, 64, 3)), ([48, 64], (48, 64, 3))])
def test_observation_shape_and_dtype(frame_size, shape):
    env = AtariEnv(game="boxing", frame_size=frame_size)
    assert env.observation_space.shape == shape and env.observation_space.dtype == np.uint8
    obs, info = env.reset(seed=0)
    assert obs.shape == shape and obs.dtype == np.uint8
    assert "lives" in info
    obs, reward, terminated, truncated, info = env.step(0)
    assert obs.shape == shape and obs.dtype == np.uint8
    assert isinstance(reward, float) and isinstance(terminated, bool) and isinstance(truncated, bool)
    assert env.observation_space.contains(obs)
    env.close()


def test_same_seed_same_frames():
    actions = [int(a) for a in np.random.default_rng(0).integers(0, 18, size=30)]
    env_a, env_b = AtariEnv(game="boxing"), AtariEnv(game="boxing")
    actions = [a % env_a.action_space.n for a in actions]
    frames_a = rollout(env_a, 123, actions)
    frames_b = rollout(env_b, 123, actions)
    assert all(np.array_equal(a, b) for a, b in zip(frames_a, frames_b))
    # Re-seeding the same instance replays the episode too.
    frames_c = rollout(env_a, 123, actions)
    assert all(np.array_equal(a, c) for a, c in zip(frames_a, frames_c))
    # The frames actually change over the 30 steps (the check above is not vacuous).
    assert not np.array_equal(frames_a[0], frames_a[-1])
    env_a.close()
    env_b.close()


def test_frame_skip_one():
    env = AtariEnv(game="boxing", frame_skip=1)
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        obs, reward, terminated, truncated, _ = env.step(1)
        assert obs.shape == (64, 64, 3) and not terminated
    env.close()


def test_terminal_on_life_loss_ends_before_the_game():
    env = AtariEnv(game="breakout", terminal_on_life_loss=True)
    _, info = env.reset(seed=0)
    lives0 = info["lives"]
    assert lives0 > 1
    rng = np.random.default_rng(0)
    for step in range(2000):
        _, _, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        if terminated or truncated:
            break
    else:
        pytest.fail("breakout with terminal_on_life_loss=True did not terminate within 2000 steps")
    assert terminated and not truncated
    assert 0 < info["lives"] < lives0, "the episode should end on the first lost life, not at game over"
    env.close()


def test_max_episode_steps_truncates():
    env = AtariEnv(game="boxing", max_episode_steps=3)
    env.reset(seed=0)
    outs = [env.step(0) for _ in range(3)]
    assert [o[3] for o in outs] == [False, False, True]
    assert not any(o[2] for o in outs)
    env.close()


def test_full_action_space_has_18_actions():
    env = AtariEnv(game="boxing", full_action_space=True)
    assert env.action_space.n == 18 and len(env.action_meanings) == 18
    minimal = AtariEnv(game="pong")
    assert minimal.action_space.n == len(minimal.action_meanings) < 18
    env.close()
    minimal.close()


def test_game_name_spellings():
    env = AtariEnv(game="Boxing")
    assert env.game == "boxing"
    env.close()


def test_unknown_game_lists_available():
    with pytest.raises(ValueError, match="Unknown Atari game 'zork'") as e:
        AtariEnv(game="zork")
    assert "boxing" in str(e.value) and "pong" in str(e.value)


@pytest.mark.parametrize("kwargs, match", [
    ({"repeat_action_probability": 1.5}, "repeat_action_probability"),
    ({"repeat_action_probability": -0.1}, "repeat_action_probability"),
    ({"frame_skip": 0}, "frame_skip"),
    ({"frame_size": 4}, "frame_size"),
    ({"render_mode": "human"}, "render_mode"),
])
def test_bad_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AtariEnv(game="boxing", **kwargs)


@pytest.mark.parametrize("action", [-1, 18, 100])
def test_out_of_range_action_raises(action):
    env = AtariEnv(game="boxing")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="outside the action space"):
        env.step(action)
    env.close()


def test_make_env_unknown_name_lists_known_envs():
    with pytest.raises(ValueError, match="Unknown environment 'nope'") as e:
        make_env("nope")
    for name in ("atari", "miniworld", "crafter", "minerl"):
        assert name in str(e.value)


def test_make_env_by_short_name_and_id():
    for name in ("atari", "worldsim/Atari-v0"):
        env = make_env(name, game="pong", frame_size=32)
        assert env.observation_space.shape == (32, 32, 3)
        env.close()


# ----------------------------------------------------------------------------- Atari 100k protocol
def test_atari100k_preset_is_the_published_protocol():
    from worldsim.cli import compose

    cfg = compose("collect", ["env=atari100k", "env.kwargs.game=pong"])
    kw = cfg.env.kwargs
    assert (kw.frame_skip, kw.repeat_action_probability, kw.noop_max, kw.terminal_on_life_loss,
            kw.full_action_space, kw.max_episode_steps, kw.frame_size) == (4, 0.0, 30, True, False, 27000, 64)
    assert cfg.env.tag == "pong_100k"
    sticky = compose("collect", ["env=pong"]).env.kwargs
    assert sticky.repeat_action_probability == 0.25 and sticky.noop_max == 0


def test_noop_starts_are_1_to_30_emulator_steps_and_seeded():
    env = AtariEnv(game="pong", repeat_action_probability=0.0, noop_max=30)
    frames = []
    for s in list(range(12)) + [0]:
        env.reset(seed=s)
        frames.append(env.ale.getEpisodeFrameNumber())  # one emulator frame per no-op
    env.close()
    assert frames[-1] == frames[0], "the same seed gives the same number of no-ops"
    assert all(1 <= f <= 30 for f in frames) and len(set(frames)) > 3


def test_scoring_plays_full_games():
    from worldsim.envs import scoring_kwargs

    kw = {"game": "breakout", "terminal_on_life_loss": True, "noop_max": 30}
    assert scoring_kwargs("atari", kw) == {**kw, "terminal_on_life_loss": False}
    assert kw["terminal_on_life_loss"] is True  # the training options are not changed
    assert scoring_kwargs("crafter", {"size": 64}) == {"size": 64}


def test_human_normalized_scores():
    from worldsim.envs.atari_scores import ATARI_100K_GAMES, REFERENCE_SCORES, human_normalized_score

    assert len(ATARI_100K_GAMES) == 26
    for game, (random, human) in REFERENCE_SCORES.items():
        assert human > random, game
        assert human_normalized_score(game, random) == 0.0
        assert human_normalized_score(game, human) == pytest.approx(1.0)
    assert human_normalized_score("pong", 14.6 + 35.3) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="Atari 100k games are alien, amidar"):
        human_normalized_score("tetris", 10)
    from worldsim.envs.atari import available_games

    assert set(ATARI_100K_GAMES) <= set(available_games()), "every Atari 100k ROM ships with ale-py"


def test_restored_state_replays_the_same_game():
    """clone_state / restore_state: two policies can be played from one moment of the game."""
    env = AtariEnv(game="breakout", repeat_action_probability=0.0)
    env.reset(seed=3)
    for a in (1, 2, 2, 3):
        env.step(a)
    state = env.clone_state()
    first = [env.step(a)[:2] for a in (1, 3, 3, 2, 0)]
    obs = env.restore_state(state)
    assert np.array_equal(obs, state[4])
    again = [env.step(a)[:2] for a in (1, 3, 3, 2, 0)]
    assert all(np.array_equal(o1, o2) and r1 == r2 for (o1, r1), (o2, r2) in zip(first, again))
    assert not np.array_equal(first[-1][0], obs)  # the game moved on in between
