"""3D-consistency / object-permanence probes on MiniWorld: probe ground truth, masks, scoring, versioning."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

os.environ.setdefault("PYGLET_HEADLESS", "True")  # before pyglet is imported, as the adapter does
pytest.importorskip("miniworld")

from worldsim.evaluation import probes as P  # noqa: E402
from worldsim.evaluation.consistency import (  # noqa: E402
    Predictor, consistency_markdown, predictor_inputs, repeat_last, scene_intervals, score_suite, tokenizer_reconstruct, world_model_predictor, write_results)
from worldsim.metrics import psnr_from_mse  # noqa: E402

SMALL = P.SuiteConfig(context_frames=8, turn_back=(1, 4), out_and_back=(2,), permanence=(1, 12))
TINY = P.SuiteConfig(context_frames=8, turn_back=(1,), full_turn=False, out_and_back=(), permanence=(1,))


def open_env(cfg):
    from worldsim.envs.miniworld import MiniWorldEnv

    try:
        return MiniWorldEnv(task=cfg.task, frame_size=cfg.frame_size, max_episode_steps=100_000)
    except (ImportError, RuntimeError) as err:  # no OpenGL: MiniWorld cannot render here
        pytest.skip(f"MiniWorld cannot render: {err}")


@pytest.fixture(scope="module")
def env():
    e = open_env(SMALL)
    yield e
    e.close()


@pytest.fixture(scope="module")
def suite(env):
    return P.make_suite(seed=0, count=1, cfg=SMALL, env=env)


def by_kind(suite, kind):
    return [p for p in suite.probes if p.probe.kind == kind]


def removal_mask(env, entity: int) -> np.ndarray:
    """Ground-truth pixels of an entity in the env's current view: those that change when it is not drawn."""
    return env.unwrapped.entity_pixels(entity)


# ----------------------------------------------------------------------------- probe ground truth
def test_suite_has_every_kind_and_prefixes_end_with_a_real_pan(suite):
    kinds = [p.probe.kind for p in suite.probes]
    assert kinds == ["turn_back", "turn_back", "full_turn", "out_and_back", "permanence", "permanence"]
    for played in suite.probes:
        ctx, ctx_actions, actions = predictor_inputs(played, SMALL.context_frames)
        assert ctx.shape == (8, 64, 64, 3) and len(ctx_actions) == 7 and len(actions) == len(played.probe.actions)
        assert np.array_equal(ctx[-1], played.frame(0))
    loops = {p.probe.kind + str(p.probe.params["size"]): p.probe.params["loop_length"] for p in suite.probes
             if p.probe.kind != "permanence"}
    assert loops == {"turn_back1": 2, "turn_back4": 8, "full_turn24": 24, "out_and_back2": 28}


def test_loops_really_return_to_the_start_pose(suite, env):
    for played in suite.probes:
        replay = P.play_probe(env, played.probe)  # reproducible from (task, seed, actions) alone
        assert np.array_equal(replay.frames, played.frames) and np.array_equal(replay.poses, played.poses)
        for i, j in played.probe.returns:
            a, b = played.pose(i), played.pose(j)
            assert np.hypot(*(a[:2] - b[:2])) < 1e-4
            assert abs((a[2] - b[2] + math.pi) % (2 * math.pi) - math.pi) < 1e-4
            assert psnr_from_mse(float(((played.frame(i) / 255.0 - played.frame(j) / 255.0) ** 2).mean())) > 40
    for played in by_kind(suite, "out_and_back"):  # it really walked: n steps of MiniWorld's 0.15 m out
        o, n = played.origin, played.probe.params["size"]
        far = np.hypot(*(played.poses[o:, :2] - played.pose(-1)[:2]).T).max()
        assert far == pytest.approx(0.15 * n, abs=1e-4)
    turns = np.diff(by_kind(suite, "full_turn")[0].poses[:, 2])
    assert np.allclose(np.abs((turns + math.pi) % (2 * math.pi) - math.pi), math.radians(15), atol=1e-5)


def test_object_is_out_of_view_during_the_turn_away(suite, env):
    for played in by_kind(suite, "permanence"):
        probe = played.probe
        lo, hi = probe.params["hidden"]
        assert hi - lo + 1 == probe.params["k"]
        frames = P.colour_mask(played.frames[played.origin + lo : played.origin + hi + 1], probe.params["color"])
        assert not frames.any()  # no pixel of its colour
        env.reset(seed=probe.seed)
        for t, a in enumerate(played.all_actions):  # and it is not drawn at all
            env.step(int(a))
            if lo <= t + 1 - played.origin <= hi:
                assert not removal_mask(env, probe.params["target"]).any()
        assert probe.params["gap"] >= probe.params["k"] + 1


def test_masks_segment_the_right_object(suite, env):
    for played in by_kind(suite, "permanence"):
        probe = played.probe
        (face, ret), = probe.returns
        env.reset(seed=probe.seed)
        for t, a in enumerate(played.all_actions):
            obs = env.step(int(a))[0]
            if t + 1 - played.origin in (face, ret):
                truth = removal_mask(env, probe.params["target"])  # every pixel the object touches
                mask = P.colour_mask(obs, probe.params["color"])
                assert not (mask & ~truth).any() and mask.sum() >= P.min_visible_pixels(64)  # nothing else
                assert not (interior(truth) & ~mask).any()  # all of it but the anti-aliased one-pixel rim
                assert (mask & truth).sum() / (mask | truth).sum() > 0.6  # a small box is mostly rim


def interior(mask: np.ndarray) -> np.ndarray:
    """Pixels whose 3×3 neighbourhood lies wholly inside ``mask``."""
    h, w = mask.shape
    padded = np.pad(mask, 1)
    out = mask.copy()
    for dy in range(3):
        for dx in range(3):
            out &= padded[dy : dy + h, dx : dx + w]
    return out


def test_colour_mask_follows_shading_and_rejects_walls():
    shades = np.linspace(0.45, 1.0, 12)
    for name, c in P.TARGET_COLORS.items():
        lit = np.round(np.outer(shades, c) * 255).astype(np.uint8)[None]  # (1, 12, 3): the colour, ambient to full light
        assert P.colour_mask(lit, c).all(), name
        others = [np.full(3, g) for g in np.linspace(0, 1, 11)] + [np.array([0.55, 0.3, 0.25]), np.array([0.3, 0.28, 0.25])]
        others += [np.array(v) * s for v in P.TARGET_COLORS.values() if v != c for s in (0.5, 1.0)]
        frame = np.round(np.stack(others) * 255).astype(np.uint8)[None]
        assert not P.colour_mask(frame, c).any(), name


# ----------------------------------------------------------------------------- scoring
def perfect_predictor(suite) -> Predictor:
    truth = {}
    for played in suite.probes:
        ctx, _, actions = predictor_inputs(played, 4)
        truth[(ctx.tobytes(), actions.tobytes())] = played.frames[played.origin + 1 :]
    return Predictor("perfect", 4, lambda ctx, _, actions: truth[(ctx.tobytes(), np.asarray(actions).tobytes())])


def test_perfect_predictor_is_perfect_and_repeat_last_is_not(suite):
    blur = lambda f: ((f.astype(np.float32) + np.roll(f, 1, axis=1) + np.roll(f, 1, axis=2)) / 3).astype(np.uint8)  # noqa: E731
    result = score_suite(suite, [perfect_predictor(suite), repeat_last()], reconstruct=blur)
    assert result["context_window"] == 4 and result["suite"]["version"] == P.PROBE_SUITE_VERSION
    perfect, last, floor = (result["scores"][n] for n in ("perfect", "repeat_last", "tokenizer_floor"))
    for L, g in perfect["revisit"]["by_loop_length"].items():
        assert g["psnr"] == math.inf and g["ssim"] == pytest.approx(1) and g["sharpness"] == pytest.approx(1)
        assert g["self_psnr"] == math.inf
        assert last["revisit"]["by_loop_length"][L]["psnr"] < 30 and last["revisit"]["by_loop_length"][L]["ssim"] < 0.99
        assert g["window"] == (["inside"] if int(L) <= 4 else ["beyond"])
    assert set(perfect["revisit"]) >= {"inside", "beyond", "by_kind"}
    assert all(v == math.inf for v in perfect["path_psnr"].values())
    for k, g in perfect["permanence"]["by_k"].items():
        assert g["iou"] == 1 and g["iou_mean"] == 1 and g["area_ratio"] == 1 and g["turn_back_iou"] == 1
        assert g["hidden_shown"] in (None, 0)
        assert last["permanence"]["by_k"][k]["iou"] == 0  # frame 0 does not show the object
        assert floor["permanence"]["by_k"][k]["iou"] > 0.3
    assert perfect["permanence"]["beyond"]["probes"] == 2  # gap > 4 frames for both k
    assert 0 < floor["revisit"]["beyond"]["sharpness"] < 1  # the blur "tokenizer" is blurry
    json.dumps(result)


def test_results_are_written_with_the_suite_version(suite, tmp_path):
    result = score_suite(suite, [repeat_last()], context_window=8, keep_probes=True)
    json_path, png_path = write_results(result, tmp_path / "bench")
    loaded = json.loads(json_path.read_text())
    assert loaded["suite"]["version"] == P.PROBE_SUITE_VERSION and loaded["suite"]["fingerprint"] == suite.fingerprint
    assert loaded["suite"]["mask"]["tolerance"] == P.MASK_TOLERANCE
    assert len(loaded["probes"]) == len(suite.probes) and png_path.stat().st_size > 1000
    assert loaded["scores"]["repeat_last"]["revisit"]["by_loop_length"]["2"]["window"] == ["inside"]


def test_world_model_predictor_runs_on_probes(suite):
    import torch

    from worldsim.diffusion import EDMConfig
    from worldsim.models.dit import DiTConfig
    from worldsim.models.tokenizer import TokenizerConfig
    from worldsim.models.world_model import WorldModel, WorldModelConfig

    torch.manual_seed(0)
    dit = DiTConfig(latent_channels=4, patch_size=2, width=32, depth=2, heads=2, mlp_ratio=2.0, num_actions=3,
                    context_frames=2, stack_frames=2)
    model = WorldModel(WorldModelConfig(tokenizer=TokenizerConfig(patch_size=4, channels=[16], latent_channels=4,
                                                                  res_blocks=1), dit=dit, edm=EDMConfig(sampling_steps=1)))
    model.set_frame_size(64, 64)
    model.eval()
    short = P.ProbeSuite(0, 1, SMALL, [suite.probes[0], by_kind(suite, "permanence")[0]])
    predictor = world_model_predictor(model, sampling_steps=1)
    ctx, ctx_actions, actions = predictor_inputs(short.probes[0], 2)
    first = predictor.predict(ctx, ctx_actions, actions)
    assert first.shape == (len(actions), 64, 64, 3) and first.dtype == np.uint8
    assert np.array_equal(first, predictor.predict(ctx, ctx_actions, actions))  # seeded by the probe
    cut = world_model_predictor(model, "model_context1", sampling_steps=1, context_limit=1)
    result = score_suite(short, [predictor, cut, repeat_last()], reconstruct=tokenizer_reconstruct(model))
    assert result["context_window"] == 2
    assert set(result["scores"]) == {"model", "model_context1", "repeat_last", "tokenizer_floor"}
    assert result["scores"]["model"]["revisit"]["by_loop_length"]["2"]["psnr"] > 0


def test_context_limited_rollout_is_the_cached_rollout_at_full_context():
    import torch

    from worldsim.models.dit import DiTConfig
    from worldsim.models.tokenizer import TokenizerConfig
    from worldsim.models.world_model import WorldModel, WorldModelConfig

    torch.manual_seed(0)
    dit = DiTConfig(latent_channels=4, width=32, depth=2, heads=2, mlp_ratio=2.0, num_actions=5, context_frames=3,
                    stack_frames=2)
    model = WorldModel(WorldModelConfig(tokenizer=TokenizerConfig(channels=[16], latent_channels=4, res_blocks=1),
                                        dit=dit)).eval()
    model.set_frame_size(32, 32)
    for p in model.dit.parameters():  # away from adaLN-Zero's init, where every context gives the same output
        p.data.normal_(0, 0.05)
    ctx, prev, acts = torch.randn(2, 3, 4, 8, 8), torch.randint(0, 5, (2, 3)), torch.randint(0, 5, (2, 6))

    def roll(fn, *args):
        return fn(ctx, prev, acts, torch.Generator().manual_seed(1), *args)

    cached = roll(model.rollout).latents
    torch.testing.assert_close(roll(model._windowed_rollout, None, 3), cached, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(roll(model.rollout_latents, None, None), cached)
    one, two = roll(model.rollout_latents, None, 1), roll(model.rollout_latents, None, 2)
    assert (one - cached).abs().max() > 0.1 and (two - one).abs().max() > 0.1  # less context, another rollout
    with pytest.raises(ValueError, match="context_limit"):
        roll(model.rollout_latents, None, 4)


# ----------------------------------------------------------------------------- reproducibility and version
def test_suite_is_reproducible_from_its_seed(env):
    a, b, c = (P.make_suite(seed=s, count=1, cfg=TINY, env=env) for s in (3, 3, 4))
    assert a.fingerprint == b.fingerprint and all(np.array_equal(x.frames, y.frames) for x, y in zip(a.probes, b.probes))
    assert c.fingerprint != a.fingerprint and a.probes[0].probe.seed != c.probes[0].probe.seed
    two = P.make_suite(seed=3, count=2, cfg=TINY, env=env)  # more scenes extend the set, never change it
    assert [p.probe for p in two.probes[: len(a.probes)]] == [p.probe for p in a.probes]


def test_default_suite_matches_its_version(env):
    suite = P.make_suite(seed=0, count=1, env=env)
    assert len(suite.probes) == 16
    assert P.SUITE_FINGERPRINTS.get(P.PROBE_SUITE_VERSION) == suite.fingerprint, (
        f"the default probes changed (fingerprint {suite.fingerprint}): bump PROBE_SUITE_VERSION in "
        "worldsim/evaluation/probes.py and record the new fingerprint in SUITE_FINGERPRINTS.")


@pytest.mark.slow
def test_bench_consistency_command(env, tmp_path, capsys):
    from dataclasses import asdict

    from worldsim.cli import main
    from worldsim.diffusion import EDMConfig
    from worldsim.models.checkpoint import save_checkpoint
    from worldsim.models.dit import DiTConfig
    from worldsim.models.tokenizer import TokenizerConfig
    from worldsim.models.world_model import WorldModel, WorldModelConfig

    cfg = WorldModelConfig(tokenizer=TokenizerConfig(patch_size=4, channels=[16], latent_channels=4, res_blocks=1),
                           dit=DiTConfig(latent_channels=4, width=32, depth=1, heads=1, num_actions=3, context_frames=2,
                                         stack_frames=2), edm=EDMConfig(sampling_steps=1))
    model = WorldModel(cfg)
    env_meta = {"env": "miniworld", "env_kwargs": {"task": "MiniWorld-OneRoom-v0", "frame_size": 64},
                "frame_shape": [64, 64, 3], "num_actions": 3, "action_meanings": env.action_meanings}
    path = save_checkpoint(tmp_path / "wm.pt", {"kind": "world_model", "step": 0, "env": env_meta, "model": model.state_dict(),
                                                "config": {"model": asdict(cfg), "frame_size": [64, 64]}})
    assert main(["bench-consistency", f"checkpoint={path}", "count=1", f"out_dir={tmp_path / 'out'}"]) == 0
    assert "probe suite v" + P.PROBE_SUITE_VERSION in capsys.readouterr().out
    result = json.loads((tmp_path / "out" / "consistency.json").read_text())
    assert result["suite"]["fingerprint"] == P.SUITE_FINGERPRINTS[P.PROBE_SUITE_VERSION] and result["context_window"] == 2
    assert set(result["scores"]) == {"model", "model_context1", "repeat_last", "tokenizer_floor"}  # context 2 > 1
    assert (tmp_path / "out" / "consistency.png").exists()


def test_scene_intervals_resample_scenes_and_pool_like_the_point_estimate():
    def perm(inter, union, window="beyond", k=8):
        return {"returns": [], "permanence": {"inter": inter, "union": union, "window": window, "k": k}}

    def ret(se, window="inside"):
        return {"returns": [{"se_real": se, "n": 100.0, "window": window}]}

    # 4 scenes x 2 probes: scene IoUs 0.5 / 0.6 / 0.8 / 0.9, the same revisit error everywhere
    scenes = [perm(i, 10) for i in (5, 6, 8, 9)]
    records = [r for p in scenes for r in (p, ret(1.0))]
    out = scene_intervals(records, scenes=4, seed=0)
    lo, hi = out["permanence_iou/beyond"]
    assert 0.5 <= lo < 0.7 < hi <= 0.9  # pooled IoU 0.7 inside, bounded by the extreme scenes
    assert out["permanence_iou/k=8"] == out["permanence_iou/beyond"]
    assert out["revisit_psnr/inside"] == [pytest.approx(20.0), pytest.approx(20.0)]  # mse 0.01 in every scene
    assert scene_intervals(records, scenes=4, seed=0) == out  # seeded
    assert scene_intervals(records, scenes=1) == {}  # one scene: no interval
    assert scene_intervals(records[:-1], scenes=4) == {}  # scenes of unequal size: refused, not guessed


# ----------------------------------------------------------------------------- walk-by: a wall hides the object
WALK = P.SuiteConfig.for_task("MiniWorld-WallWalk-v0", context_frames=16, turn_back=(), full_turn=False,
                              out_and_back=())


@pytest.fixture(scope="module")
def wall_env():
    e = open_env(WALK)
    yield e
    e.close()


@pytest.fixture(scope="module")
def walk_suite(wall_env):
    return P.make_suite(seed=0, count=1, cfg=WALK, env=wall_env)


def test_walk_by_a_wall_really_hides_the_object_in_front_of_the_camera(walk_suite, wall_env):
    from worldsim.envs.miniworld_tasks import GAP_HALF_WIDTH

    assert [p.probe.params["m"] for p in walk_suite.probes] == [1, 2, 4] and WALK.permanence == ()
    for played in walk_suite.probes:
        probe, target = played.probe, played.probe.params["target"]
        (face, ret), = probe.returns
        lo, hi = probe.params["hidden"]
        assert (lo, hi) == (0, 2 * probe.params["m"]) and probe.params["k"] == hi - lo + 1
        assert P.same_pose(played.pose(face), played.pose(ret))  # walked back to where it stood
        obj = np.asarray(probe.params["target_pos"])
        for t in range(face, ret + 1):  # ground truth, re-rendered with and without the box
            P.play(wall_env, probe.seed, played.all_actions[: played.origin + t])
            drawn = removal_mask(wall_env, target).any()
            x, z, heading = played.pose(t)
            bearing = math.degrees(P._wrap(math.atan2(-(obj[2] - z), obj[0] - x) - heading))
            crossing = x + (obj[0] - x) * z / (z - obj[2])  # where the line of sight meets the wall's middle
            if lo <= t <= hi:  # hidden, though in front of the camera, because the wall is in the way
                assert not drawn and abs(bearing) < 30 and played.target_pixels[played.origin + t] == 0
            if t in (face, ret):
                assert drawn and abs(crossing) < GAP_HALF_WIDTH  # seen through the gap
        steps = np.diff(played.poses[played.origin + face:, :2], axis=0)
        assert (np.hypot(*steps.T) > 0.1).all()  # every step walked (0.15 m)


def test_walk_by_is_scored_as_occlusion(walk_suite):
    truth = {}
    for played in walk_suite.probes:
        ctx, _, actions = predictor_inputs(played, 4)
        truth[(ctx.tobytes(), actions.tobytes())] = played.frames[played.origin + 1 :]
    perfect = Predictor("perfect", 4, lambda ctx, _, a: truth[(ctx.tobytes(), np.asarray(a).tobytes())])
    result = score_suite(walk_suite, [perfect, repeat_last()])
    occ = result["scores"]["perfect"]["occlusion"]
    assert set(occ["by_k"]) == {"3", "5", "9"} and all(g["iou"] == 1 for g in occ["by_k"].values())
    assert result["scores"]["repeat_last"]["occlusion"]["beyond"]["iou"] == 0  # frame 0 does not show it
    assert result["scores"]["perfect"]["permanence"]["by_k"] == {}  # none in this suite
    assert "walk-by IoU" in consistency_markdown(result)


def test_one_room_suite_is_unchanged_by_version_2(env):
    """Version 2 only added walk_by probes: OneRoom's default suite holds version 1's probes."""
    suite = P.make_suite(seed=0, count=1, env=env)
    assert P.suite_fingerprint([p.probe for p in suite.probes], "1") == P.SUITE_FINGERPRINTS["1"]


def test_walk_by_needs_a_task_that_walks_back(env):
    with pytest.raises(ValueError, match="move_back"):
        P.make_suite(seed=0, count=1, cfg=P.SuiteConfig(walk_by=(1,), permanence=()), env=env)
