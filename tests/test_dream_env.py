"""The dream env: Gymnasium / SB3 contracts, same-step autoreset, seeding, contexts, PPO plumbing, errors.

Every test uses the session's tiny world model (``tiny_world_model``), which is barely trained: its
episode-end head may fire at random, so tests that need stable episodes pass ``end_threshold=1.0``
(never ends) and termination is tested with ``end_threshold=0.0`` (every step ends).
"""

from __future__ import annotations

import json
import shutil

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import worldsim  # noqa: F401  (registers worldsim/Dream-v0)
from worldsim.envs import make_env
from worldsim.sim.contexts import RecordedContexts
from worldsim.sim.dream_env import DreamEnv, DreamVectorEnv
from worldsim.sim.sb3 import DreamSB3VecEnv
from worldsim.models.checkpoint import CheckpointError

N = 4
PIX_TOL = 2  # uint8 levels: batched matmuls differ slightly from batch-of-one ones
LAT_TOL = 1e-3


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The tiny model gains nothing from intra-op threads, and on a busy 2-core machine OpenMP's
    spinning threads make every small matmul ~40x slower; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def paths(tiny_world_model):
    # fp32: these tests compare dreams with each other and with direct model calls to the last bit;
    # bf16 dreams (the default on CPUs with hardware bf16) have tests of their own below
    return {"checkpoint": str(tiny_world_model["world_model"]), "data_dir": str(tiny_world_model["data_dir"]),
            "precision": "fp32"}


@pytest.fixture(scope="module")
def real_boxing():
    env = make_env("atari", game="boxing")
    yield env
    env.close()


def stable(paths, **kw):
    """Keyword arguments of a dream whose episodes only end by truncation."""
    return {**paths, "end_threshold": 1.0, **kw}


def vec(paths, num_envs=N, **kw) -> DreamVectorEnv:
    return DreamVectorEnv(num_envs=num_envs, **stable(paths, **kw))


def as_int(o: np.ndarray) -> np.ndarray:
    return o.astype(np.int32) if o.dtype == np.uint8 else o


def close_obs(a: np.ndarray, b: np.ndarray) -> bool:
    tol = PIX_TOL if a.dtype == np.uint8 else LAT_TOL
    return a.shape == b.shape and a.dtype == b.dtype and np.abs(as_int(a) - as_int(b)).max() <= tol


def actions_for(t: int, n: int = N) -> np.ndarray:
    return np.array([(t + i) % 18 for i in range(n)], dtype=np.int64)


def vec_rollout(env, seed, steps: int, options=None):
    obs, _ = env.reset(seed=seed, options=options)
    out = [obs]
    for t in range(steps):
        obs, *_ = env.step(actions_for(t, env.num_envs))
        out.append(obs)
    return np.stack(out)


# ----------------------------------------------------------------------------- 1. single env checkers
LATENT_WARNINGS = [  # latents are unbounded float "images" smaller than a CNN's minimum: expected, not errors
    pytest.mark.filterwarnings("ignore:.*Box observation space m.*infinity"),
    pytest.mark.filterwarnings("ignore:It seems that your observation"),
    pytest.mark.filterwarnings("ignore:The minimal resolution for an image"),
]


@pytest.mark.parametrize("obs_type", ["pixels", pytest.param("latent", marks=LATENT_WARNINGS)])
def test_check_env_through_gymnasium_make(paths, obs_type, real_boxing):
    env = gym.make("worldsim/Dream-v0", obs_type=obs_type, **stable(paths))
    assert env.spec is not None and env.spec.id == "worldsim/Dream-v0"
    dream = env.unwrapped
    assert isinstance(dream, DreamEnv)
    check_env(dream)  # includes reset/step determinism under a seed
    sb3_check_env(dream)
    assert dream.action_space == real_boxing.action_space
    assert dream.action_meanings == list(real_boxing.unwrapped.action_meanings)
    if obs_type == "pixels":
        assert dream.observation_space == real_boxing.observation_space
        assert dream.observation_space == gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    else:
        assert dream.observation_space.dtype == np.float32 and len(dream.observation_space.shape) == 3
    env.close()


def test_bf16_dream_passes_checkers_and_stays_close_to_fp32(paths):
    """bf16 autocast (the default where the CPU multiplies bf16 in hardware) is deterministic under a
    seed, passes both env checkers, and generates what the fp32 dream does up to rounding."""
    bf16 = DreamEnv(**stable({**paths, "precision": "bf16"}))
    assert bf16.core.precision == "bf16"
    check_env(bf16)
    sb3_check_env(bf16)
    fp32 = DreamEnv(**stable(paths))
    runs = {}
    for name, env in (("bf16", bf16), ("fp32", fp32)):
        frames = [env.reset(seed=3)[0]] + [env.step(a)[0] for a in (1, 2, 3, 4)]
        runs[name] = np.stack(frames).astype(np.float32)
    assert np.abs(runs["bf16"] - runs["fp32"]).mean() < 2.0  # uint8 levels, averaged over pixels
    with pytest.raises(ValueError, match="precision"):
        DreamEnv(**stable({**paths, "precision": "fp16"}))


def test_single_env_step_types_and_seeding(paths):
    env = DreamEnv(**stable(paths))
    obs, info = env.reset(seed=7)
    assert obs.dtype == np.uint8 and obs.shape == (64, 64, 3) and info == {}
    obs2, r, term, trunc, info = env.step(np.int64(3))
    assert env.observation_space.contains(obs2)
    assert isinstance(r, float) and isinstance(term, bool) and isinstance(trunc, bool)
    first = [obs, obs2] + [env.step(a)[0] for a in (0, 1, 2)]
    # the same seed replays the same dream, exactly (the reset reuses the cache at other positions)
    again = [env.reset(seed=7)[0], env.step(3)[0]] + [env.step(a)[0] for a in (0, 1, 2)]
    np.testing.assert_array_equal(np.stack(first), np.stack(again))
    other = [env.reset(seed=8)[0], env.step(3)[0]] + [env.step(a)[0] for a in (0, 1, 2)]
    assert not np.array_equal(np.stack(first), np.stack(other))
    env.close()


def test_single_env_truncation_and_termination(paths):
    env = DreamEnv(**stable(paths, horizon=3))
    env.reset(seed=0)
    flags = [env.step(0)[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]
    env = DreamEnv(**paths, horizon=3, end_threshold=0.0)
    env.reset(seed=0)
    _, _, term, trunc, _ = env.step(0)
    assert term is True and trunc is False


# ----------------------------------------------------------------------------- 2. vector env contract
def test_make_vec_spaces_and_reset(paths, real_boxing):
    envs = gym.make_vec("worldsim/Dream-v0", num_envs=N, vectorization_mode="vector_entry_point", **stable(paths))
    assert isinstance(envs.unwrapped, DreamVectorEnv) and envs.num_envs == N
    assert envs.single_observation_space == real_boxing.observation_space
    assert envs.single_action_space == real_boxing.action_space
    assert envs.observation_space == batch_space(envs.single_observation_space, N)
    assert envs.action_space == batch_space(envs.single_action_space, N)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert envs.unwrapped.action_meanings == list(real_boxing.unwrapped.action_meanings)
    obs, info = envs.reset(seed=0)
    assert obs in envs.observation_space and isinstance(info, dict)
    obs, rew, term, trunc, info = envs.step(envs.action_space.sample())
    assert obs in envs.observation_space
    assert rew.shape == (N,) and rew.dtype == np.float32
    assert term.shape == trunc.shape == (N,) and term.dtype == trunc.dtype == np.bool_
    envs.close()


def test_latent_vector_env_spaces(paths):
    envs = vec(paths, obs_type="latent")
    obs, _ = envs.reset(seed=0)
    assert obs.dtype == np.float32 and obs in envs.observation_space
    assert envs.observation_space == batch_space(envs.single_observation_space, N)
    obs, *_ = envs.step(actions_for(0))
    assert obs in envs.observation_space


def test_same_step_autoreset(paths):
    seed, horizon = 11, 3
    envs = vec(paths, horizon=horizon)
    envs.reset(seed=seed)
    for t in range(horizon - 1):
        last, _, term, trunc, info = envs.step(actions_for(t))
        assert not term.any() and not trunc.any() and "final_obs" not in info
    obs, _, term, trunc, info = envs.step(actions_for(horizon - 1))
    assert trunc.all() and not term.any()
    assert info["_final_obs"].dtype == np.bool_ and info["_final_obs"].all()
    # The returned obs is the next episode's first frame: the decoded last frame of the second context
    # each sub-env's generator draws (the first one started the episode that just ended).
    core = envs.core
    for i in range(N):
        final = info["final_obs"][i]
        assert final.shape == (64, 64, 3) and final.dtype == np.uint8
        rng = np.random.default_rng(seed + i)
        core.contexts.sample(rng)
        frames, _ = core.contexts.sample(rng)
        with torch.inference_mode():
            z = core.model.encode(torch.from_numpy(frames[-1:]).permute(0, 3, 1, 2))
            expected = core.model.decode(z)[0].permute(1, 2, 0).numpy()
        assert close_obs(obs[i], expected)
        assert not np.array_equal(obs[i], final)
    # The new episodes count from 0 again.
    for t in range(horizon - 1):
        _, _, term, trunc, info = envs.step(actions_for(t))
        assert not trunc.any() and "final_obs" not in info
    assert envs.step(actions_for(0))[3].all()


def test_termination_autoresets_every_step(paths):
    envs = DreamVectorEnv(num_envs=2, horizon=5, end_threshold=0.0, **paths)
    envs.reset(seed=0)
    obs, _, term, trunc, info = envs.step(np.array([0, 1]))
    assert term.all() and not trunc.any() and info["_final_obs"].all()
    assert all(info["final_obs"][i].shape == (64, 64, 3) for i in range(2))


def test_same_seed_same_trajectories_different_seeds_differ(paths):
    a = vec_rollout(vec(paths), 5, 4)
    b = vec_rollout(vec(paths), 5, 4)
    np.testing.assert_array_equal(a, b)
    envs = vec(paths)
    np.testing.assert_array_equal(vec_rollout(envs, 5, 4), vec_rollout(envs, 5, 4))  # re-reset, same env
    c = vec_rollout(envs, 6, 4)
    assert not np.array_equal(a, c)
    # sub-envs get seed + i: different dreams within the batch
    assert not np.array_equal(a[:, 0], a[:, 1])


@pytest.mark.parametrize("obs_type", ["pixels", "latent"])
def test_sub_env_i_matches_single_env_seeded_seed_plus_i(paths, obs_type):
    seed, steps = 21, 4
    batch = vec_rollout(vec(paths, obs_type=obs_type), seed, steps)
    single = DreamEnv(**stable(paths, obs_type=obs_type))
    for i in range(N):
        obs, _ = single.reset(seed=seed + i)
        traj = [obs] + [single.step(int(actions_for(t)[i]))[0] for t in range(steps)]
        for t, o in enumerate(traj):
            assert close_obs(batch[t, i], o), f"sub-env {i} differs from DreamEnv(seed={seed + i}) at step {t}"


def test_mode_reward_pays_the_most_probable_sign_of_the_same_dream(paths):
    """``reward="mode"`` (agent.dream_reward) pays the argmax sign of the heads' posterior, where the
    default pays its expectation; the frames are the same dream either way."""
    runs = {}
    for mode in ("expected", "mode"):
        envs = vec(paths, reward=mode)
        probs, step = [], envs.core.model.step

        def spy(*args, _step=step, _probs=probs, **kwargs):
            out = _step(*args, **kwargs)
            _probs.append(out.reward_probs.float().clone())
            return out

        envs.core.model.step = spy
        obs, _ = envs.reset(seed=5)
        frames, rewards = [obs], []
        for t in range(4):
            obs, r, *_ = envs.step(actions_for(t))
            frames.append(obs)
            rewards.append(r)
        runs[mode] = np.stack(frames), np.stack(rewards), torch.stack(probs).numpy()
    (f_exp, r_exp, p_exp), (f_mode, r_mode, p_mode) = runs["expected"], runs["mode"]
    assert close_obs(f_exp, f_mode)
    np.testing.assert_allclose(r_exp, p_exp[..., 2] - p_exp[..., 0], atol=1e-5)
    np.testing.assert_array_equal(r_mode, p_mode.argmax(-1) - 1.0)
    assert set(np.unique(r_mode)) <= {-1.0, 0.0, 1.0} and not np.all(np.isin(r_exp, [-1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="agent.dream_reward"):
        vec(paths, reward="sample")


def test_seed_list(paths):
    seeds = [3, 9, 3, 4]
    by_list = vec_rollout(vec(paths), seeds, 3)
    assert close_obs(by_list[:, 0], by_list[:, 2])  # same seed, same dream
    by_int = vec_rollout(vec(paths), 3, 3)  # sub-env 0 gets 3, sub-env 1 gets 4
    assert close_obs(by_list[:, 0], by_int[:, 0])
    assert close_obs(by_list[:, 3], by_int[:, 1])
    assert close_obs(vec_rollout(vec(paths), np.int64(3), 3), by_int)  # a numpy int is one seed too
    with pytest.raises(ValueError, match="2 seeds for 4 envs"):
        vec(paths).reset(seed=[1, 2])


def test_explicit_context_options(paths):
    C = DreamVectorEnv(num_envs=1, **stable(paths)).core.C
    ctx = RecordedContexts(paths["data_dir"], C, "all")
    frames, actions = ctx.sample(np.random.default_rng(0))
    options = {"context_frames": frames, "context_actions": actions}
    envs = vec(paths)
    obs, _ = envs.reset(seed=[7] * N, options=options)  # identical contexts and seeds: identical dreams
    traj = [obs] + [envs.step(np.full(N, 2))[0] for _ in range(3)]
    for o in traj:
        for i in range(1, N):
            assert close_obs(o[i], o[0])
    single = DreamEnv(**stable(paths))
    s_obs, _ = single.reset(seed=7, options=options)
    assert close_obs(obs[0], s_obs)
    # A batch of contexts, one per sub-env.
    other, other_actions = ctx.sample(np.random.default_rng(1))
    batch_frames = np.stack([frames, other, frames, other])
    batch_actions = np.stack([actions, other_actions, actions, other_actions])
    obs, _ = envs.reset(seed=0, options={"context_frames": batch_frames, "context_actions": batch_actions})
    o_obs, _ = single.reset(seed=0, options={"context_frames": other, "context_actions": other_actions})
    assert close_obs(obs[0], s_obs) and close_obs(obs[2], s_obs)
    assert close_obs(obs[1], o_obs) and close_obs(obs[3], o_obs)
    # context_actions default to NOOPs, also for a batch of contexts
    obs, _ = envs.reset(seed=0, options={"context_frames": batch_frames})
    assert obs in envs.observation_space


def test_vector_render(paths):
    envs = vec(paths, num_envs=2, render_mode="rgb_array", render_scale=2)
    obs, _ = envs.reset(seed=0)
    frames = envs.render()
    assert len(frames) == 2
    for f, o in zip(frames, obs):
        assert f.shape == (128, 128, 3) and f.dtype == np.uint8
        np.testing.assert_array_equal(f[::2, ::2], o)


# ----------------------------------------------------------------------------- 3. SB3 adapter
def test_sb3_adapter(paths):
    venv = DreamSB3VecEnv(vec(paths, num_envs=2, horizon=2))
    venv.seed(4)
    first = venv.reset()
    assert first.shape == (2, 64, 64, 3) and first.dtype == np.uint8
    venv.seed(4)
    np.testing.assert_array_equal(venv.reset(), first)
    out = venv.step(np.array([1, 2]))
    assert len(out) == 4
    obs, rewards, dones, infos = out
    assert obs.shape == (2, 64, 64, 3) and rewards.shape == (2,) and rewards.dtype == np.float32
    assert dones.shape == (2,) and not dones.any() and infos == [{}, {}]
    obs, rewards, dones, infos = venv.step(np.array([1, 2]))
    assert dones.all()
    for info in infos:
        assert info["TimeLimit.truncated"] is True
        term_obs = info["terminal_observation"]
        assert term_obs.shape == (64, 64, 3) and term_obs.dtype == np.uint8
    assert venv.get_attr("action_meanings") == [venv.dream.action_meanings] * 2
    assert venv.get_attr("render_mode", indices=[1]) == [None]
    assert venv.env_is_wrapped(gym.Wrapper) == [False, False]
    frames = venv.env_method("render", indices=[0])
    assert len(frames) == 1 and len(frames[0]) == 2
    venv.close()


def test_sb3_adapter_terminated_is_not_truncation(paths):
    venv = DreamSB3VecEnv(DreamVectorEnv(num_envs=2, horizon=5, end_threshold=0.0, **paths))
    venv.reset()
    _, _, dones, infos = venv.step(np.array([0, 0]))
    assert dones.all() and all(i["TimeLimit.truncated"] is False and "terminal_observation" in i for i in infos)


# ----------------------------------------------------------------------------- 4. PPO plumbing
def test_ppo_learns_in_dream_and_plays_real_env(paths):
    from stable_baselines3 import PPO

    from worldsim.agents.actor import AgentActor, stack_frames
    from worldsim.agents.real_eval import score_on_real_env

    venv = stack_frames(DreamSB3VecEnv(DreamVectorEnv(paths["checkpoint"], num_envs=2, horizon=16, end_threshold=1.0,
                                                      data_dir=paths["data_dir"])), 2)
    model = PPO("CnnPolicy", venv, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(256)
    assert model.num_timesteps >= 256
    score = score_on_real_env(AgentActor(model.policy, 2), "atari", {"game": "boxing"}, episodes=1, max_steps=100)
    assert score.episodes == 1 and score.mean_length == 100 and np.isfinite(score.mean_return)


def test_cli_train_agent_smoke(paths, tmp_path):
    from worldsim.cli import main

    ckpt = tmp_path / "world_model.pt"
    shutil.copy(paths["checkpoint"], ckpt)
    out = tmp_path / "agent" / "agent.json"
    argv = ["train-agent", f"checkpoint={ckpt}", f"data_dir={paths['data_dir']}", f"out={out}", "progress=false",
            "agent.steps=64", "agent.num_envs=2", "agent.n_steps=32", "agent.batch_size=32",
            "agent.eval_episodes=1", "agent.eval_max_steps=50"]
    assert main(argv) == 0
    assert out.exists() and out.with_suffix(".safetensors").exists()
    result = json.loads((out.parent / "agent_eval.json").read_text())
    assert result["dream_steps"] >= 64 and result["real"]["episodes"] == 1
    assert result["random_policy_real"]["episodes"] == 1


# ----------------------------------------------------------------------------- 5. bad input
@pytest.mark.parametrize("actions, error, match", [
    (np.array([0, 1, 2, 18]), ValueError, r"\[0, 18\)"),
    (np.array([0, -1, 2, 3]), ValueError, r"\[0, 18\)"),
    (np.array([0.0, 1.0, 2.0, 3.0]), TypeError, "integers"),
    (np.array([0, 1, 2]), ValueError, r"shape \(4,\)"),
    (np.zeros((4, 1), dtype=np.int64), ValueError, r"shape \(4,\)"),
    (3, ValueError, r"shape \(4,\)"),
])
def test_vector_env_rejects_bad_actions(paths, actions, error, match):
    envs = vec(paths)
    envs.reset(seed=0)
    with pytest.raises(error, match=match):
        envs.step(actions)
    obs, *_ = envs.step(np.zeros(N, dtype=np.int64))  # still usable
    assert obs in envs.observation_space


@pytest.mark.parametrize("action, error, match", [
    (18, ValueError, r"\[0, 18\)"),
    (-1, ValueError, r"\[0, 18\)"),
    (1.0, TypeError, "integers"),
    (np.array([1, 2]), ValueError, "one action"),
])
def test_single_env_rejects_bad_actions(paths, action, error, match):
    env = DreamEnv(**stable(paths))
    env.reset(seed=0)
    with pytest.raises(error, match=match):
        env.step(action)


def test_step_before_reset(paths):
    with pytest.raises(gym.error.ResetNeeded):
        DreamEnv(**stable(paths)).step(0)
    with pytest.raises(gym.error.ResetNeeded):
        vec(paths).step(np.zeros(N, dtype=np.int64))


def test_checkpoint_without_heads(paths, tmp_path):
    ckpt = torch.load(paths["checkpoint"], weights_only=True)
    for key in ("model", "ema"):
        if key in ckpt:
            ckpt[key] = {k: v for k, v in ckpt[key].items() if not k.startswith("heads.")}
    bad = tmp_path / "no_heads.pt"
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointError, match="heads"):
        DreamEnv(bad, data_dir=paths["data_dir"])


def test_tokenizer_checkpoint_is_refused(paths, tiny_world_model):
    with pytest.raises(CheckpointError, match="world_model"):
        DreamEnv(tiny_world_model["tokenizer"], data_dir=paths["data_dir"])


def test_bad_contexts(paths):
    env = DreamEnv(**stable(paths))
    C = env.core.C
    frames, actions = RecordedContexts(paths["data_dir"], C, "all").sample(np.random.default_rng(0))
    with pytest.raises(ValueError, match=f"the model's {C} context frames"):
        env.reset(seed=0, options={"context_frames": frames[1:], "context_actions": actions[1:]})
    with pytest.raises(ValueError, match="uint8"):
        env.reset(seed=0, options={"context_frames": frames.astype(np.float32), "context_actions": actions})
    with pytest.raises(ValueError, match="integer actions"):
        env.reset(seed=0, options={"context_frames": frames, "context_actions": actions.astype(np.float32)})
    with pytest.raises(ValueError, match=r"context_actions must lie in \[0, 18\)"):
        env.reset(seed=0, options={"context_frames": frames, "context_actions": actions + 100})
    with pytest.raises(ValueError, match="4 sub-envs"):  # a batch of 3 contexts for 4 dreams
        vec(paths).reset(seed=0, options={"context_frames": np.stack([frames] * 3)})
    with pytest.raises(ValueError, match="batch of context_actions"):  # no silent sharing of one action list
        vec(paths).reset(seed=0, options={"context_frames": np.stack([frames] * N), "context_actions": actions})


def test_no_context_source_explains_how_to_give_one(paths, tmp_path):
    ckpt = torch.load(paths["checkpoint"], weights_only=True)
    ckpt["dataset"]["path"] = str(tmp_path / "moved_away")
    moved = tmp_path / "world_model.pt"
    torch.save(ckpt, moved)
    env = DreamEnv(moved, end_threshold=1.0)
    with pytest.raises(ValueError, match="data_dir=.*context_frames"):
        env.reset(seed=0)
    # an explicit context still works
    C = env.core.C
    frames, actions = RecordedContexts(paths["data_dir"], C, "all").sample(np.random.default_rng(0))
    obs, _ = env.reset(seed=0, options={"context_frames": frames, "context_actions": actions})
    assert obs in env.observation_space


@pytest.mark.parametrize("kwargs, match", [
    ({"obs_type": "bad"}, "obs_type"),
    ({"horizon": 0}, "horizon"),
    ({"render_mode": "ansi"}, "render_mode"),
])
def test_bad_constructor_arguments(paths, kwargs, match):
    with pytest.raises(ValueError, match=match):
        DreamEnv(**{**stable(paths), **kwargs})


def test_bad_vector_constructor_arguments(paths):
    with pytest.raises(ValueError, match="num_envs"):
        DreamVectorEnv(num_envs=0, **paths)
    with pytest.raises(ValueError, match="horizon"):
        DreamVectorEnv(num_envs=2, horizon=0, **paths)


# ----------------------------------------------------------------------------- 6. render
def test_render_rgb_array(paths):
    env = DreamEnv(**stable(paths), render_mode="rgb_array", render_scale=3)
    obs, _ = env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (192, 192, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame, obs.repeat(3, 0).repeat(3, 1))
    obs, *_ = env.step(1)
    np.testing.assert_array_equal(env.render()[::3, ::3], obs)


def test_render_rgb_array_of_latent_env_shows_pixels(paths):
    env = DreamEnv(**stable(paths), obs_type="latent", render_mode="rgb_array", render_scale=2)
    env.reset(seed=0)
    env.step(1)
    frame = env.render()
    assert frame.shape == (128, 128, 3) and frame.dtype == np.uint8


def test_render_human_headless(paths):
    pytest.importorskip("pygame")
    env = DreamEnv(**stable(paths), render_mode="human", render_scale=2)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3)
    env.step(0)
    assert env.render() is None
    env.close()


# ----------------------------------------------------------------------------- 7. dream video CLI
def test_cli_rollout_writes_mp4_and_gif(paths, tmp_path, capsys):
    from worldsim.cli import main
    import imageio.v2 as imageio

    mp4, gif = tmp_path / "r.mp4", tmp_path / "r.gif"
    argv = ["rollout", f"checkpoint={paths['checkpoint']}", f"data_dir={paths['data_dir']}", f"out={mp4}",
            f"gif={gif}", "steps=5", "rows=2", "split=all", "scale=2", "psnr_threshold=99"]
    assert main(argv) == 0
    frames = imageio.mimread(gif)
    assert len(frames) == 5
    # 2 rows of (22-pixel header + 64·2 + 2·2 border); 3 panels of (64·2 + 2·2) side by side
    assert frames[0].shape[:2] == (2 * (22 + 132), 3 * 132)
    reader = imageio.get_reader(mp4)
    assert reader.count_frames() == 5 and reader.get_meta_data()["size"] == (3 * 132, 2 * (22 + 132))
    reader.close()
    # a 99 dB threshold is missed at once: every row is marked from h=1
    assert "per row: h=1, h=1" in capsys.readouterr().out
    red = frames[0][22 + 1, 132 + 60][:3]  # the dream panel's top border, first row
    assert red[0] > 150 and red[1] < 80


def test_error_heatmap_and_psnr_marking():
    from worldsim.evaluation.video import error_heatmap

    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    b[1] = 255
    heat = error_heatmap(a, b)
    assert (heat[0] == 0).all() and (heat[1] == [255, 255, 0]).all()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("obs_type", ["pixels", "latent"])
def test_partial_autoreset_under_both_precisions(paths, precision, obs_type):
    """Some sub-envs end while the others go on (the main job's crash: under bf16 autocast a partial
    reset wrote fp32 keys into the bf16 cache). The ended rows restart from a fresh context, the
    others continue exactly as in a dream where nothing ended."""
    horizon = 4
    envs = vec(paths, horizon=horizon, precision=precision, obs_type=obs_type)
    twin = vec(paths, horizon=horizon, precision=precision, obs_type=obs_type)
    envs.reset(seed=3)
    twin.reset(seed=3)
    envs.core.steps[[0, 2]] = horizon - 1  # rows 0 and 2 reach the horizon on the next step
    obs, _, term, trunc, info = envs.step(actions_for(0))
    ref, *_ = twin.step(actions_for(0))
    assert trunc.tolist() == [True, False, True, False] and not term.any()
    assert info["_final_obs"].tolist() == [True, False, True, False]
    for i in (0, 2):
        assert close_obs(info["final_obs"][i], ref[i])  # the last frame before the reset
    for i in (1, 3):
        assert close_obs(obs[i], ref[i])
    assert envs.core.steps.tolist() == [0, 1, 0, 1]
    for t in range(1, 3):  # the dream goes on: rows 1, 3 as the twin, all rows finite and valid
        obs, _, term, trunc, _ = envs.step(actions_for(t))
        ref, *_ = twin.step(actions_for(t))
        assert obs in envs.observation_space
        for i in (1, 3):
            assert close_obs(obs[i], ref[i]) if precision == "fp32" else np.isfinite(as_int(obs[i])).all()


@pytest.mark.slow  # inductor compiles two graphs (~1 min on 2 cores)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_compiled_dream_matches_eager_and_is_seeded(paths, precision):
    """compile=True (inductor, frozen weights) dreams the same trajectories as the eager dream, up
    to the rounding of fused kernels, and the same floats for the same seed."""
    kw = {**paths, "precision": precision}
    eager = vec_rollout(vec(kw, obs_type="latent"), 5, 6)
    compiled_env = vec(kw, obs_type="latent", compile=True)
    assert hasattr(compiled_env.core.model.dit._frame_pass, "_torchdynamo_orig_callable")  # really compiled
    a, b = vec_rollout(compiled_env, 5, 6), vec_rollout(compiled_env, 5, 6)
    np.testing.assert_array_equal(a, b)
    tol = 1e-4 if precision == "fp32" else 0.05
    err = np.abs(a - eager).max() / np.abs(eager).max()
    assert err < tol, err
