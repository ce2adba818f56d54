"""worldsim play: the command core, the headless pygame loop recording real play into a store, the key
maps of every env family, and bad input.

Uses the session's tiny world model (``tiny_world_model``, trained on Boxing); ``end_threshold=1.0``
keeps its barely trained end head from restarting the dream at random.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from worldsim.data.store import EpisodeStore, StoreError
from worldsim.envs import make_env
from worldsim.envs.minerl_actions import action_meanings as minerl_meanings
from worldsim.models.loading import load_world_model
from worldsim.sim.keymaps import CONTROL_KEYS, FAMILIES, keymap_for
from worldsim.sim.play import MAX_SAMPLING_STEPS, PlaySession

ALE_FULL = ["NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHT", "UPLEFT", "DOWNRIGHT", "DOWNLEFT", "UPFIRE",
            "RIGHTFIRE", "LEFTFIRE", "DOWNFIRE", "UPRIGHTFIRE", "UPLEFTFIRE", "DOWNRIGHTFIRE", "DOWNLEFTFIRE"]
PONG = ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]
MINIWORLD_ALL = ["turn_left", "turn_right", "move_forward", "move_back", "pickup", "drop", "toggle", "done"]
CRAFTER = ["noop", "move_left", "move_right", "move_up", "move_down", "do", "sleep", "place_stone", "place_table",
           "place_furnace", "place_plant", "make_wood_pickaxe", "make_stone_pickaxe", "make_iron_pickaxe",
           "make_wood_sword", "make_stone_sword", "make_iron_sword"]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def pygame_headless(monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    return pytest.importorskip("pygame")


def play_session(tiny_world_model, **kw) -> PlaySession:
    return PlaySession.from_checkpoint(tiny_world_model["world_model"], precision="fp32", end_threshold=1.0, **kw)


# ----------------------------------------------------------------------------- 1. the core, without pygame
def test_commands_step_pause_single_step_reset_and_sampling_steps(tiny_world_model):
    s = play_session(tiny_world_model, real=False)
    assert s.mode == "dream" and s.real is None and s.store is None and "dream only" in s.message
    assert s.frames["dream"].shape == (64, 64, 3) and s.frames["dream"].dtype == np.uint8
    assert s.handle(3) and s.handle(4) and s.steps == 2
    assert not s.handle("pause") and s.paused
    assert not s.handle(5) and s.steps == 2 and s.action == 5  # paused: remembered, not played
    assert s.handle("step") and s.steps == 3  # one step, with the remembered action
    assert not s.handle(1) and s.steps == 3
    s.handle("pause")
    assert s.handle(1) and s.steps == 4 and s.total_steps == 4
    s.handle("reset")
    assert s.steps == 0 and s.episode == 2 and s.total_steps == 4
    # sampling steps: the model's default, clamped to 1..8, and the dream really uses them
    assert s.sampling_steps == s.dream.core.model.cfg.edm.sampling_steps
    for _ in range(3):
        s.handle("fewer_steps")
    assert s.sampling_steps == 1
    for _ in range(MAX_SAMPLING_STEPS + 3):
        s.handle("more_steps")
    assert s.sampling_steps == MAX_SAMPLING_STEPS and s.dream.core.sampling_steps == MAX_SAMPLING_STEPS
    assert s.handle(0)
    s.handle("toggle_real")
    assert s.mode == "dream" and "no real env" in s.message
    with pytest.raises(ValueError, match=r"outside 0\.\.17"):
        s.handle(18)
    with pytest.raises(ValueError, match="unknown play command"):
        s.handle("jump")
    s.handle("quit")
    assert s.done and not s.handle(0) and s.total_steps == 5


def test_same_seed_replays_the_same_dream(tiny_world_model):
    s = play_session(tiny_world_model, real=False)
    runs = []
    for _ in range(2):
        s.reset(seed=5)
        frames = [s.frames["dream"]]
        for a in (1, 2, 3):
            s.handle(a)
            frames.append(s.frames["dream"])
        runs.append(np.stack(frames))
    np.testing.assert_array_equal(runs[0], runs[1])
    s.close()


def test_dream_starts_from_the_real_moment_and_toggles(tiny_world_model):
    from worldsim.sim.play_window import render_screen

    s = play_session(tiny_world_model)
    C = s.C
    assert s.real is not None and s.warmup_steps == C - 1 and s.mode == "dream"
    given = s.dream.core.explicit_context  # the dream started from the real frames of the start
    assert given["context_frames"].shape == (C, 64, 64, 3)
    np.testing.assert_array_equal(given["context_frames"][-1], s.frames["real"])
    reals, actions = [s.frames["real"]], []
    for a, toggle in ((1, False), (2, True), (3, False), (4, True)):
        assert s.handle(a)  # every action steps both worlds
        reals.append(s.frames["real"])
        actions.append(a)
        if toggle:
            s.handle("toggle_real")
    assert s.mode == "dream" and s.steps == 4 and s.returns.keys() == {"real", "dream"}
    # real -> dream: the dream restarted from the last C real frames and the actions between them
    given = s.dream.core.explicit_context
    np.testing.assert_array_equal(given["context_frames"], np.stack(reals[-C:]))
    assert given["context_actions"].tolist() == actions[len(actions) - (C - 1):]
    screen = render_screen(s, scale=2)
    assert screen.dtype == np.uint8 and screen.shape[0] > 128 and screen.shape[1] >= 128 + 64
    s.close()


# ----------------------------------------------------------------------------- 2. the pygame loop, headless
def test_headless_keyboard_play_records_the_real_episode(tiny_world_model, tmp_path, pygame_headless):
    from worldsim.sim.play_window import run_play

    record = tmp_path / "boxing_human"
    s = play_session(tiny_world_model, record_dir=record)
    m = s.keymap.action_meanings
    script = [(0, "tab"), (1, "right"), (2, "up", "down"), (2, "space", "down"), (4, "up", "up"),
              (4, "space", "up"), (5, "p"), (6, "right"), (7, "n"), (8, "p"), (9, "escape")]
    result = run_play(s, scale=2, fps=0, script=script)
    # tick 0 toggles to the real env and idles; 5 pauses; 6 chooses RIGHT; 7 plays it once; 8 resumes; 9 quits
    played = [m.index(a) for a in ("NOOP", "RIGHT", "UPFIRE", "UPFIRE", "NOOP", "RIGHT", "NOOP")]
    assert result.steps == len(played) and result.ticks == 9 and s.done
    store = EpisodeStore.open(record)
    assert store.metadata["env"] == "atari" and store.metadata["env_kwargs"]["game"] == "boxing"
    episodes = list(store.iter_episodes(on_error="raise"))
    assert [str(p) for p in result.episodes_written] == [str(store.episode_dir / f"{episodes[0][0]}.npz")]
    (_, ep), = episodes
    assert len(ep) == s.warmup_steps + len(played)
    assert ep.frames.shape == (len(ep) + 1, 64, 64, 3) and ep.frames.dtype == np.uint8
    assert ep.actions.tolist() == [s.idle] * s.warmup_steps + played
    assert ep.truncated[-1] and not ep.terminated.any()  # cut by quitting, like collect's in-flight episodes
    assert ep.meta["policy"] == "human" and ep.meta["cut_by_recorder"] and ep.meta["steps_played_in_dream"] == 0
    real = make_env("atari", **store.metadata["env_kwargs"])
    np.testing.assert_array_equal(ep.frames[0], real.reset(seed=0)[0])  # real gameplay, from the seed's start
    real.close()


def test_cli_play_smoke(tiny_world_model, tmp_path, pygame_headless, capsys):
    from worldsim.cli import main

    record = tmp_path / "human"
    argv = ["play", f"checkpoint={tiny_world_model['world_model']}", f"record_dir={record}", "fps=0", "scale=1",
            "precision=fp32", "end_threshold=1.0", "script=[[0,right],[1,space],[2,reset],[3,left],[4,escape]]"]
    assert main(argv) == 0
    assert "played 4 steps; wrote 2 real episodes" in capsys.readouterr().out
    lengths = [len(ep) for _, ep in EpisodeStore.open(record).iter_episodes(on_error="raise")]
    warmup = load_world_model(tiny_world_model["world_model"])[0].cfg.dit.context_frames - 1
    assert lengths == [warmup + 2, warmup + 2]  # reset at tick 2 (before its step) cuts the first episode


# ----------------------------------------------------------------------------- 3. key bindings
@pytest.mark.parametrize("family, meanings", [
    ("atari", ALE_FULL), ("atari", PONG), ("miniworld", MINIWORLD_ALL), ("miniworld", MINIWORLD_ALL[:3]),
    ("crafter", CRAFTER), ("minerl", minerl_meanings()), ("minerl", minerl_meanings(30)), ("other", ["a", "b", "c"]),
])
def test_keymaps_only_make_valid_actions(family, meanings):
    km = keymap_for(family, meanings)
    assert not set(km.keys) & set(CONTROL_KEYS)
    keys = list(km.keys) + [str(d) for d in range(10)] + ["tab", "x"]
    reached = set()
    for n in range(4):
        for held in itertools.combinations(keys, n):
            a = km.action(held)
            assert a is None or (isinstance(a, int) and 0 <= a < len(meanings)), (held, a)
            reached.add(a)
    unreachable = set(range(len(meanings))) - reached
    assert not unreachable, [meanings[a] for a in unreachable]
    assert km.help_lines()[-1].startswith("TAB dream/real")


def test_keymaps_combine_held_keys_by_the_action_meanings():
    def name(family, meanings, *held):
        a = keymap_for(family, meanings).action(held)
        return None if a is None else meanings[a]

    assert name("atari", ALE_FULL) == "NOOP"
    assert name("atari", ALE_FULL, "up", "right", "space") == "UPRIGHTFIRE"
    assert name("atari", ALE_FULL, "3") == "RIGHT"  # number keys pick by index
    assert name("atari", PONG, "up", "space") == "FIRE"  # Pong has no UP: the rest of the combination
    assert name("atari", PONG, "right", "space") == "RIGHTFIRE"
    assert name("miniworld", MINIWORLD_ALL[:3]) is None  # no no-op: the world waits
    assert name("miniworld", MINIWORLD_ALL[:3], "up") == "move_forward"
    assert name("crafter", CRAFTER, "space") == "do" and name("crafter", CRAFTER, "1") == "make_wood_pickaxe"
    assert name("minerl", minerl_meanings(), "w", "space") == "forward_jump"
    assert name("minerl", minerl_meanings(), "w", "left") == "forward_camera_left_15"
    assert name("minerl", minerl_meanings(), "w", "left ctrl") == "sprint_forward"
    assert "down: DOWN" not in " ".join(keymap_for("atari", PONG).help_lines())
    from worldsim.envs.minetest import action_meanings as minetest_meanings

    assert name("minetest", minetest_meanings(15.0), "w", "f") == "forward_attack"
    assert name("minetest", minetest_meanings(15.0), "w", "left ctrl") == "forward"  # no sprint in Minetest
    assert set(FAMILIES) == {"atari", "miniworld", "crafter", "minerl", "minetest"}


# ----------------------------------------------------------------------------- 4. bad input
def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    from worldsim.cli import main

    with pytest.raises(FileNotFoundError, match="No checkpoint at .*fix the path"):
        PlaySession.from_checkpoint(tmp_path / "nope.pt")
    assert main(["play", f"checkpoint={tmp_path / 'nope.pt'}"]) == 1
    assert "No checkpoint at" in capsys.readouterr().err
    assert main(["play"]) == 1
    assert "say which world model" in capsys.readouterr().err


@pytest.mark.parametrize("env, kwargs, n", [("crafter", {}, 17), ("atari", {"game": "pong"}, 6)])
def test_record_dir_of_another_env_is_refused(tiny_world_model, tmp_path, env, kwargs, n):
    other = tmp_path / "other"
    EpisodeStore.create(other, {"env": env, "env_kwargs": kwargs, "frame_shape": [64, 64, 3], "num_actions": n,
                                "action_meanings": [str(i) for i in range(n)], "realtime": False})
    with pytest.raises(StoreError, match="different environment"):
        play_session(tiny_world_model, record_dir=other)
    assert not list((other / "episodes").iterdir())


def test_without_a_real_env_the_dream_plays_and_nothing_is_recorded(tiny_world_model, tmp_path, monkeypatch):
    import worldsim.sim.play as play

    def no_env(name, **kwargs):
        raise ImportError(f"{name} is not installed")

    monkeypatch.setattr(play, "make_env", no_env)
    s = play_session(tiny_world_model, record_dir=tmp_path / "rec")
    assert s.real is None and s.store is None
    assert "cannot be built here" in s.message and "Recording nothing" in s.message
    assert s.handle(1) and s.handle(2)
    assert s.close() == [] and not (tmp_path / "rec").exists()


def test_bad_settings(tiny_world_model, pygame_headless):
    from worldsim.sim.play_window import run_play

    with pytest.raises(ValueError, match="sampling_steps must be 1..8"):
        play_session(tiny_world_model, sampling_steps=0)
    s = play_session(tiny_world_model, real=False)
    with pytest.raises(ValueError, match="not a pygame key name"):
        run_play(s, fps=0, script=[(0, "upp")])
    assert s.done  # closed on the way out
