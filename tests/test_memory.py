"""Pose memory: odometry against MiniWorld's ground truth, retrieval, the memory-conditioned DiT, and
a tiny MiniWorld model with memory trained and dreamed through the real entry points."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("PYGLET_HEADLESS", "True")

from worldsim.models.memory import (MEMORY_RADIUS, Motion, PoseMemory, check_motion_table, episode_memory,  # noqa: E402
                                    integrate, retrieve)

TABLE = torch.tensor([[0.0, 15.0], [0.0, -15.0], [0.15, 0.0]], dtype=torch.float64)  # MiniWorld's turn_left, turn_right, move_forward
L, R, F = 0, 1, 2


def test_odometry_follows_miniworld_ground_truth():
    pytest.importorskip("miniworld")
    from worldsim.envs.miniworld import MiniWorldEnv

    try:
        env = MiniWorldEnv("MiniWorld-OneRoom-v0", frame_size=32, max_episode_steps=10_000)
    except (ImportError, RuntimeError) as err:
        pytest.skip(f"MiniWorld cannot render: {err}")
    assert np.allclose(env.motion, TABLE.numpy())  # the task's own forward_step and turn_step
    _, info = env.reset(seed=3)
    actions = np.random.default_rng(0).choice([L, R, F], size=60, p=[0.35, 0.35, 0.3])
    truth = [info]
    for a in actions:
        _, _, terminated, _, info = env.step(int(a))
        truth.append(info)
        if terminated:
            break
    env.close()
    poses = integrate(torch.as_tensor(actions[: len(truth) - 1]), Motion.from_table(TABLE)).numpy()
    start = truth[0]
    for k, info in enumerate(truth):
        # a blocked move leaves the agent where it was; odometry counts it: compare up to the first one
        if k and actions[k - 1] == F and np.allclose(info["state/agent_pos"], truth[k - 1]["state/agent_pos"]):
            assert k > 5, "the first moves of this seed should not be blocked (pick another seed)"
            break
        dx, dz = info["state/agent_pos"][[0, 2]] - start["state/agent_pos"][[0, 2]]
        yaw0 = float(start["state/agent_dir"])
        # odometry starts at yaw 0: rotate the true displacement into the start heading's frame
        c, s = math.cos(yaw0), math.sin(yaw0)
        assert np.allclose([dx * c - dz * s, dx * s + dz * c], poses[k, :2], atol=1e-4), k
        dyaw = (float(info["state/agent_dir"]) - yaw0 - poses[k, 2] + math.pi) % (2 * math.pi) - math.pi
        assert abs(dyaw) < 1e-4, k


def test_retrieval_finds_the_revisit_and_the_rollout_memory_equals_the_training_index():
    motion = Motion.from_table(TABLE)
    actions = torch.tensor([L, L, L, R, R, R, F, F, L, R, R, R, R, R, R, R, R, R, R, R, R, R, R])
    index = episode_memory(torch.cat([actions, torch.zeros(1, dtype=torch.long)]), [len(actions) + 1], motion, span=8)
    # frame 6 is back at frame 0's pose (three turns out and back): memory is frame 0, exactly
    assert index.index[6] == 0 and torch.equal(index.features[6], torch.tensor([0.0, 0.0, 0.0, 1.0]))
    assert index.index[4] == 2 and index.index[5] == 1  # on the way back: the frames of the way out
    assert index.index[0] == -1 and index.features[0, 3] == 0  # the first frame has no past
    assert index.index[10] == 8  # L then R at 0.3 m: back at frame 8's pose (not 7's, 0.15 m behind)
    assert index.index[11] == 10  # one turn from both 8 and 10: the newer one
    # nothing within the radius: no memory, zero features
    poses = torch.tensor([[[0.0, 0.0, 0.0], [0.45, 0.0, 0.0]]], dtype=torch.float64)
    _, feats = retrieve(poses, torch.tensor([[True, True]]), torch.tensor([[2.0, 1.0]]),
                        torch.tensor([[0.0, 0.0, math.radians(45)]], dtype=torch.float64), motion.units)
    assert (feats == 0).all()

    lat = torch.arange(len(actions) + 1, dtype=torch.float32)[:, None, None, None].expand(-1, 2, 1, 1)
    mem = PoseMemory(1, 8, (2, 1, 1), motion, torch.device("cpu"))
    mem.reset(lat[None, :1], torch.tensor([[3]]))
    for k, a in enumerate(actions):
        got, feats = mem.query(a[None])
        want = index.index[k + 1]
        assert torch.equal(feats[0], index.features[k + 1]), k
        assert got[0, 0, 0, 0] == (lat[want, 0, 0, 0] if want >= 0 else 0.0), k
        mem.append(lat[k + 1][None], a[None])


def test_motion_table_errors_say_what_to_do():
    with pytest.raises(ValueError, match="Collect the data again"):
        check_motion_table(None, 3, "the store x")
    with pytest.raises(ValueError, match="3 rows"):
        check_motion_table([[0.0, 15.0]], 3, "the store x")
    with pytest.raises(ValueError, match="memory_span=0"):
        check_motion_table([[0.0, 0.0]] * 3, 3, "the store x")
    assert MEMORY_RADIUS >= 1  # one step off still counts as a memory of the pose


def tiny_memory_model(span: int = 16):
    from worldsim.models.dit import DiTConfig
    from worldsim.models.tokenizer import TokenizerConfig
    from worldsim.models.world_model import WorldModel, WorldModelConfig

    torch.manual_seed(0)
    dit = DiTConfig(latent_channels=4, width=32, depth=2, heads=2, mlp_ratio=2.0, num_actions=3, context_frames=3,
                    stack_frames=2)
    model = WorldModel(WorldModelConfig(tokenizer=TokenizerConfig(channels=[16], latent_channels=4, res_blocks=1),
                                        dit=dit, memory_span=span)).eval()
    model.set_frame_size(32, 32)
    model.set_motion(TABLE, "test")
    for p in model.dit.parameters():  # away from the zero init, so that every input matters
        p.data.normal_(0, 0.05)
    return model


def test_memory_model_rolls_out_the_same_cached_and_windowed_and_uses_its_memory():
    model = tiny_memory_model()
    ctx = torch.randn(2, 7, 4, 8, 8)  # 7 frames of history: the last 3 go to the attention cache
    prev = torch.tensor([[3, L, L, L, L, L, L]] * 2)  # a pan of 90 degrees
    acts = torch.tensor([[R, R, R, R, R, R]] * 2)  # back: from the third dreamed frame on, poses only the history saw

    def roll(context, fn, *args):
        return fn(context, prev[:, -context.shape[1]:], acts, torch.Generator().manual_seed(1), *args)

    cached = roll(ctx, model.rollout).latents
    torch.testing.assert_close(roll(ctx, model._windowed_rollout, None, 3), cached, atol=1e-4, rtol=1e-4)
    # the history before the attention window changes the dream only through the memory
    other = ctx.clone()
    other[:, :4] = torch.randn(2, 4, 4, 8, 8)
    assert (roll(other, model.rollout).latents - cached).abs().max() > 1e-3
    with pytest.raises(ValueError, match="at least 3 frames"):
        model.start_rollout(ctx[:, :2], prev[:, :2])
    with pytest.raises(ValueError, match="pose memory"):  # the DiT refuses a call without its memory
        model.dit.embed_noisy(torch.zeros(1, 1, 4, 8, 8), torch.zeros(1, 1, 2, 4, 8, 8), torch.zeros(1, 1, dtype=torch.long))


def test_memory_model_trains_and_dreams_on_miniworld(tmp_path):
    """Collect MiniWorld play, train a tiny tokenizer and a tiny world model with pose memory through the
    CLI, resume it, then dream in the vector env across an autoreset and run it on consistency probes."""
    pytest.importorskip("miniworld")
    from worldsim.cli import main
    from worldsim.data.collect import collect
    from worldsim.data.store import EpisodeStore
    from worldsim.evaluation import probes as P
    from worldsim.evaluation.consistency import predictor_inputs, world_model_predictor
    from worldsim.models.loading import load_world_model
    from worldsim.sim.dream_env import DreamVectorEnv

    data = tmp_path / "store"
    try:
        collect("miniworld", {"task": "MiniWorld-OneRoom-v0", "frame_size": 32, "max_episode_steps": 60}, str(data), 240,
                policy="revisit", num_workers=1, progress=False)
    except (ImportError, RuntimeError) as err:
        pytest.skip(f"MiniWorld cannot render: {err}")
    assert EpisodeStore.open(data).metadata["motion"] == TABLE.tolist()
    common = ["model=tiny", "env=miniworld", "env.kwargs.frame_size=32", f"data_dir={data}", f"run_dir={tmp_path}",
              "progress=false", "device=cpu", "model.memory_span=12"]
    assert main(["train-tokenizer", *common]) == 0
    assert main(["train-world-model", *common, "model.world_model_train.steps=10"]) == 0
    assert main(["train-world-model", *common]) == 0  # resumes to the preset's 20 steps
    model, ckpt = load_world_model(tmp_path / "world_model.pt")
    assert ckpt["step"] == 20 and model.cfg.memory_span == 12 and torch.equal(model.motion, TABLE)

    env = DreamVectorEnv(tmp_path / "world_model.pt", num_envs=2, data_dir=data, horizon=5)
    env.reset(seed=0)
    for _ in range(7):  # past the horizon: rows restart, and their memory with them
        obs, *_ = env.step(np.array([L, F]))
    assert obs.shape == (2, 32, 32, 3) and int(env.core.cache.memory.count.min()) >= model.cfg.dit.context_frames

    suite = P.make_suite(0, 1, P.SuiteConfig(frame_size=32, context_frames=8, turn_back=(1,), full_turn=False,
                                             out_and_back=(), permanence=(1,)))
    predictor = world_model_predictor(model, history=8, sampling_steps=1)
    ctx, ctx_actions, actions = predictor_inputs(suite.probes[0], predictor.context_frames)
    assert ctx.shape[0] == 8 and predictor.predict(ctx, ctx_actions, actions).shape == (len(actions), 32, 32, 3)


def test_memory_needs_a_store_that_declares_its_motion(tiny_world_model, tmp_path, capsys):
    from worldsim.cli import main

    code = main(["train-world-model", "model=tiny", f"data_dir={tiny_world_model['data_dir']}", f"run_dir={tmp_path}",
                 f"tokenizer={tiny_world_model['tokenizer']}", "progress=false", "device=cpu", "model.memory_span=8"])
    err = capsys.readouterr().err
    assert code != 0 and "camera motion" in err and "memory_span=0" in err  # Boxing has no camera
    assert not (tmp_path / "world_model.pt").exists()
