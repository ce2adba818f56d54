"""MineRL adapter, the shared discrete action set and the VPT importer, without Minecraft.

MineRL cannot be installed on the build machine (it needs Java 8 and builds Minecraft), so the
adapter runs against a fake that copies MineRL's interface: the old gym API, a dict observation
with ``pov`` plus ``inventory``/``compass`` entries, a dict action space with MineRL's real keys
(including a string enum), ``seed()``, and old gym's ``TimeLimit.truncated`` flag.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import gymnasium as gym
import imageio
import numpy as np
import pytest

from worldsim.data.minerl_import import VPTImportError, import_vpt_recordings
from worldsim.data.store import EpisodeStore
from worldsim.envs.common import env_metadata
from worldsim.envs.minerl import MineRLEnv, MineRLUnavailableError, minerl_env_metadata
from worldsim.envs.minerl_actions import (
    ACTION_MEANINGS,
    MINERL_04_KEYS,
    MINERL_10_KEYS,
    action_meanings,
    discrete_to_minerl,
    minerl_to_discrete,
    vpt_record_to_minerl,
    vpt_records_to_minerl,
)

A = {name: i for i, name in enumerate(ACTION_MEANINGS)}
NAVIGATE_KEYS = (*MINERL_04_KEYS, "place")  # MineRLNavigate-v0: simple keys + the enum `place`


# ====================================================================== a faithful fake MineRL
class FakeEnum:
    """Stands in for MineRL's ``Enum`` space: string values, ``"none"`` is the no-op."""

    def __init__(self, *values: str) -> None:
        self.values = values

    def contains(self, x) -> bool:
        return x in self.values


class FakeDictSpace:
    """MineRL's ``spaces.Dict`` keeps its sub-spaces in ``.spaces`` (an ordered mapping)."""

    def __init__(self, spaces: dict) -> None:
        self.spaces = dict(spaces)

    def keys(self):
        return self.spaces.keys()


class FakeMineRL:
    """Old-gym MineRL env: ``reset() -> obs``, ``step() -> (obs, reward, done, info)``.

    The view is a coloured square that the camera moves and ``forward`` grows, over a background
    chosen by the world seed, with a pixel that moves every tick, so frames follow the actions.
    """

    def __init__(self, keys=NAVIGATE_KEYS, pov_shape=(64, 64), time_limit=40, goal_steps=None) -> None:
        spaces = {}
        for k in keys:
            if k == "camera":
                spaces[k] = gym.spaces.Box(-180.0, 180.0, (2,), np.float32)
            elif k == "place":
                spaces[k] = FakeEnum("none", "dirt", "other")
            else:
                spaces[k] = gym.spaces.Discrete(2)
        self.action_space = FakeDictSpace(spaces)
        self.pov_shape = pov_shape
        self.time_limit = time_limit
        self.goal_steps = goal_steps  # forward steps that reach the goal (terminal), or None
        self.seeds: list[int] = []
        self.actions: list[dict] = []
        self._rng = np.random.default_rng(12345)
        self.closed = 0

    def seed(self, seed=None):
        self.seeds.append(seed)
        self._rng = np.random.default_rng(seed)

    def _obs(self):
        h, w = self.pov_shape
        pov = np.empty((h, w, 3), np.uint8)
        pov[:] = self._bg
        size = int(np.clip(h // 8 + self._forward, 2, h // 2))
        cy = int(np.clip(h // 2 - self._pitch * h / 90, 0, h - size))
        cx = int((w // 2 + self._yaw * w / 90) % (w - size))
        pov[cy:cy + size, cx:cx + size] = (250, 40, 40)
        pov[self._t % h, (3 * self._t) % w] = (255, 255, 255)
        return {"pov": pov, "inventory": {"dirt": np.array(self._dirt)},
                "compass": {"angle": np.array(self._yaw % 360 - 180, dtype=np.float32)}}

    def reset(self):
        self._bg = self._rng.integers(0, 200, 3).astype(np.uint8)
        self._t, self._yaw, self._pitch, self._forward, self._dirt = 0, 0.0, 0.0, 0, 0
        return self._obs()

    def step(self, action):
        assert set(action) == set(self.action_space.spaces), "MineRL needs every action key"
        for k, v in action.items():
            space = self.action_space.spaces[k]
            assert space.contains(v), f"{k}={v!r} is not in {space}"
        self.actions.append(action)
        cam = np.asarray(action["camera"])
        assert cam.shape == (2,) and cam.dtype == np.float32
        self._pitch = float(np.clip(self._pitch + cam[0], -90, 90))
        self._yaw += float(cam[1])
        self._forward += int(action["forward"]) - int(action["back"])
        self._t += 1
        reward = float(action["attack"]) * float(self._rng.random() < 0.5)
        self._dirt += int(reward)
        info = {}
        done = False
        if self.goal_steps is not None and self._forward >= self.goal_steps:
            done = True
        elif self._t >= self.time_limit:
            done, info["TimeLimit.truncated"] = True, True
        return self._obs(), reward, done, info

    def close(self):
        self.closed += 1


def make_env(**kwargs) -> tuple[MineRLEnv, FakeMineRL]:
    fake_kwargs = {k: kwargs.pop(k) for k in ("keys", "pov_shape", "time_limit", "goal_steps") if k in kwargs}
    fake = FakeMineRL(**fake_kwargs)
    return MineRLEnv(_make_minerl_env=lambda: fake, **kwargs), fake


# ====================================================================== the discrete action set
def test_action_table():
    assert 16 <= len(ACTION_MEANINGS) <= 24 and len(set(ACTION_MEANINGS)) == len(ACTION_MEANINGS)
    assert ACTION_MEANINGS[0] == "noop"
    assert "camera_up_15" in ACTION_MEANINGS and "camera_up_7.5" in action_meanings(7.5)
    with pytest.raises(ValueError, match="camera_step"):
        action_meanings(0)


@pytest.mark.parametrize("keys", [NAVIGATE_KEYS, MINERL_10_KEYS], ids=["minerl0.4", "minerl1.0"])
def test_round_trip_every_action(keys):
    for i, name in enumerate(ACTION_MEANINGS):
        action = discrete_to_minerl(i, keys)
        assert list(action) == list(keys)
        assert action["camera"].dtype == np.float32 and action["camera"].shape == (2,)
        if "place" in action:
            assert action["place"] == "none"
        if name == "use" and "use" not in keys:  # MineRL 0.4 has no `use`: the action is a no-op
            assert minerl_to_discrete(action) == A["noop"]
        else:
            assert minerl_to_discrete(action) == i, name
    assert discrete_to_minerl(A["camera_up_15"], keys)["camera"].tolist() == [-15.0, 0.0]
    assert discrete_to_minerl(A["forward_camera_right_15"], keys, camera_step=5)["camera"].tolist() == [0.0, 5.0]
    with pytest.raises(ValueError, match="outside"):
        discrete_to_minerl(len(ACTION_MEANINGS), keys)


@pytest.mark.parametrize("camera, expected", [
    ([7.4, 0.0], "noop"), ([7.5, 0.0], "noop"), ([7.6, 0.0], "camera_down_15"), ([-7.6, 0.0], "camera_up_15"),
    ([0.0, 100.0], "camera_right_15"), ([0.0, -180.0], "camera_left_15"), ([10.0, -12.0], "camera_left_15"),
    ([12.0, -10.0], "camera_down_15"), ([10.0, 10.0], "camera_right_15"), ([[0.0, -9.0]], "camera_left_15"),
    ([float("nan"), 0.0], "noop"),
])
def test_camera_quantised_to_nearest_bin(camera, expected):
    assert ACTION_MEANINGS[minerl_to_discrete({"camera": np.array(camera)})] == expected


def test_camera_step_changes_bins_and_priority_order():
    assert minerl_to_discrete({"camera": [0.0, 3.0]}, camera_step=5) == A["camera_right_15"]  # index, any step
    assert minerl_to_discrete({"camera": [0.0, 3.0]}) == A["noop"]
    # camera first: a turn beats every button, walking forward keeps yaw turns as forward_camera_*
    assert minerl_to_discrete({"camera": [0, 20], "forward": 1, "attack": 1}) == A["forward_camera_right_15"]
    assert minerl_to_discrete({"camera": [20, 0], "forward": 1}) == A["camera_down_15"]
    assert minerl_to_discrete({"use": 1, "attack": 1, "forward": 1}) == A["use"]
    assert minerl_to_discrete({"attack": 1, "jump": 1, "forward": 1}) == A["forward_attack"]
    assert minerl_to_discrete({"jump": 1, "sprint": 1, "forward": 1}) == A["forward_jump"]
    assert minerl_to_discrete({"sneak": 1, "forward": 1}) == A["sneak"]
    assert minerl_to_discrete({"forward": 1, "back": 1}) == A["noop"]  # opposite keys cancel
    assert minerl_to_discrete({"left": 1, "right": 1, "back": 1}) == A["back"]
    assert minerl_to_discrete({"place": "dirt", "camera": np.zeros((1, 2))}) == A["noop"]


def vpt_line(tick, keys=(), dx=0.0, dy=0.0, buttons=(), new_buttons=(), gui=False, hotbar=0):
    """One line of a VPT recorder .jsonl (v7 format, README of openai/Video-Pre-Training)."""
    return {
        "mouse": {"x": 640.0, "y": 360.0, "dx": float(dx), "dy": float(dy), "scaledX": 0.0, "scaledY": 0.0,
                  "dwheel": 0.0, "buttons": list(buttons), "newButtons": list(new_buttons)},
        "keyboard": {"keys": [f"key.keyboard.{k}" for k in keys], "newKeys": [], "chars": ""},
        "isGuiOpen": gui, "isGuiInventory": gui, "hotbar": hotbar,
        "yaw": -112.35 + tick, "pitch": 8.1, "xpos": 841.36 + 0.1 * tick, "ypos": 63.0, "zpos": 24.95,
        "tick": tick, "milli": 1649575088006 + 50 * tick, "inventory": [{"type": "oak_planks", "quantity": 59}],
        "serverTick": 6001 + tick, "serverTickDurationMs": 36.3, "stats": {},
    }


def test_vpt_line_to_minerl_action():
    a = vpt_record_to_minerl(vpt_line(0, keys=("w", "space", "left.control"), dx=40, dy=-20, buttons=(0, 1)))
    assert set(a) == set(MINERL_10_KEYS)
    assert (a["forward"], a["jump"], a["sprint"], a["attack"], a["use"], a["back"]) == (1, 1, 1, 1, 1, 0)
    np.testing.assert_allclose(a["camera"], [-20 * 360 / 2400, 40 * 360 / 2400], rtol=1e-6)
    assert a["camera"].dtype == np.float32
    assert vpt_record_to_minerl(vpt_line(0, dx=5000))["camera"][1] == 180.0  # clipped to MineRL's range
    b = vpt_record_to_minerl(vpt_line(0, keys=("a", "d", "s", "left.shift", "e", "q", "f", "escape", "3", "t")))
    assert all(b[k] == 1 for k in ("left", "right", "back", "sneak", "inventory", "drop", "swapHands", "ESC",
                                   "hotbar.3"))
    gui = vpt_record_to_minerl(vpt_line(0, keys=("w", "e"), dx=300, buttons=(0,), gui=True))
    assert gui["inventory"] == 1 and gui["forward"] == 0 and gui["attack"] == 0 and not gui["camera"].any()
    assert minerl_to_discrete(gui) == A["noop"]


def test_vpt_stuck_attack_and_hotbar_scroll():
    lines = [vpt_line(0, buttons=(0,), new_buttons=(0,), hotbar=2), vpt_line(1, buttons=(0,), hotbar=2),
             vpt_line(2, buttons=(0,), new_buttons=(0,), hotbar=2), vpt_line(3, hotbar=5)]
    actions = vpt_records_to_minerl(lines)
    assert [a["attack"] for a in actions] == [0, 0, 1, 0]  # held from the start: ignored until re-pressed
    assert actions[0]["hotbar.3"] == 1 and actions[3]["hotbar.6"] == 1 and actions[2]["hotbar.3"] == 0


# ====================================================================== the live adapter
def test_gymnasium_check_env():
    from gymnasium.utils.env_checker import check_env

    # built through gymnasium.make so that the checker can re-make it in every render mode
    env = gym.make("worldsim/MineRL-v0", render_mode="rgb_array", _make_minerl_env=FakeMineRL).unwrapped
    check_env(env)  # includes reset/step determinism under a seed
    env.close()


def test_sb3_check_env():
    from stable_baselines3.common.env_checker import check_env

    env, _ = make_env()
    check_env(env, warn=True)
    env.close()


def test_adapter_observations_actions_and_state():
    env, fake = make_env(frame_size=32, max_episode_steps=1000)
    assert env.action_space == gym.spaces.Discrete(len(ACTION_MEANINGS)) and env.action_meanings == ACTION_MEANINGS
    obs, info = env.reset(seed=1)
    assert obs.shape == (32, 32, 3) and obs.dtype == np.uint8
    assert info["state/inventory"].shape == (1,) and env.state_names["inventory"] == ["dirt"]
    assert info["state/compass"].shape == (1,) and env.state_names["compass"] == ["angle"]
    frames = [obs]
    for name in ("forward", "camera_right_15", "forward_attack", "use"):
        obs, reward, terminated, truncated, info = env.step(A[name])
        frames.append(obs)
        assert not (terminated or truncated)
    assert all(np.abs(a.astype(int) - b).sum() > 0 for a, b in zip(frames, frames[1:]))
    sent = fake.actions
    assert sent[0]["forward"] == 1 and sent[0]["place"] == "none"
    assert sent[1]["camera"].tolist() == [0.0, 15.0]
    assert sent[2]["forward"] == 1 and sent[2]["attack"] == 1
    assert not any(v for k, v in sent[3].items() if k not in ("camera", "place"))  # no `use` in 0.4 tasks
    assert not sent[3]["camera"].any()
    with pytest.raises(ValueError, match="outside the action space"):
        env.step(len(ACTION_MEANINGS))
    env.close()
    env.close()
    assert fake.closed == 1


def test_episode_ends_time_limit_goal_and_max_steps():
    env, _ = make_env(time_limit=5)
    env.reset(seed=0)
    ends = [env.step(A["noop"])[2:4] for _ in range(5)]
    assert ends[-1] == (False, True) and not any(any(e) for e in ends[:-1])  # old gym TimeLimit -> truncated
    env, _ = make_env(goal_steps=3)
    env.reset(seed=0)
    ends = [env.step(A["forward"])[2:4] for _ in range(3)]
    assert ends[-1] == (True, False)  # the task's own done -> terminated
    env, _ = make_env(max_episode_steps=2)
    env.reset(seed=0)
    assert [env.step(A["noop"])[3] for _ in range(2)] == [False, True]


def test_seeding_fixes_worlds():
    env, fake = make_env()
    a, _ = env.reset(seed=7)
    a2, _ = env.reset()
    b, _ = env.reset(seed=7)
    b2, _ = env.reset()
    assert np.array_equal(a, b) and np.array_equal(a2, b2) and len(fake.seeds) == 4
    unseeded, fake2 = make_env()
    unseeded.reset()
    assert fake2.seeds == []  # without a seed MineRL picks its worlds itself


def test_minerl_1_0_task_and_registry():
    env = gym.make("worldsim/MineRL-v0", task="MineRLBasaltFindCave-v0", frame_size=[36, 64],
                   _make_minerl_env=lambda: FakeMineRL(keys=MINERL_10_KEYS, pov_shape=(360, 640)))
    obs, _ = env.reset(seed=0)
    assert obs.shape == (36, 64, 3)
    env.step(A["use"])
    assert env.unwrapped._env.actions[-1]["use"] == 1 and env.unwrapped._env.actions[-1]["ESC"] == 0
    env.close()


def test_missing_minerl_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "minerl", None)  # makes `import minerl` fail
    monkeypatch.setitem(sys.modules, "gym", None)
    with pytest.raises(ImportError, match="Java 8") as e:
        MineRLEnv()
    assert isinstance(e.value, MineRLUnavailableError)
    for hint in ("openjdk-8-jdk", "worldsim[minecraft]", "minerl==0.4.4", "docs/minecraft.md"):
        assert hint in str(e.value)


def test_metadata_matches_live_adapter():
    kwargs = {"task": "MineRLNavigateDense-v0", "frame_size": 48, "camera_step": 10.0}
    env, _ = make_env(**kwargs)
    assert minerl_env_metadata(**kwargs) == env_metadata(env, "minerl", kwargs)
    assert minerl_env_metadata()["action_meanings"] == ACTION_MEANINGS


# ====================================================================== VPT import
# (line, expected action name); the last line's action has no following frame and is dropped.
SCRIPT = [
    (dict(keys=("w", "space")), "forward_jump"),
    (dict(keys=("w",)), "forward"),
    (dict(keys=("w", "left.control")), "sprint_forward"),
    (dict(buttons=(0,), new_buttons=(0,)), "attack"),
    (dict(keys=("w",), buttons=(0,)), "forward_attack"),
    (dict(dx=100.0), "camera_right_15"),
    (dict(keys=("w",), dx=-100.0), "forward_camera_left_15"),
    (dict(dy=-80.0), "camera_up_15"),
    (dict(dy=30.0), "noop"),  # 4.5 degrees: nearer to no turn than to 15
    (dict(keys=("w",), dx=200.0, buttons=(0,), gui=True), "noop"),  # inventory open
    (dict(buttons=(1,), new_buttons=(1,)), "use"),
    (dict(keys=("left.shift",)), "sneak"),
    (dict(keys=("s",)), "back"),
    (dict(keys=("a",)), "left"),
    (dict(keys=("d",)), "right"),
    (dict(keys=("space",)), "jump"),
    (dict(keys=("w", "s")), "noop"),
    (dict(keys=("t",)), "noop"),
    (dict(keys=("e",)), "noop"),
    (dict(dy=80.0, dx=10.0), "camera_down_15"),
    (dict(), "noop"),
    (dict(keys=("w",)), None),
]
H, W = 72, 128


def video_frames(n: int) -> list[np.ndarray]:
    frames = []
    for i in range(n):
        f = np.full((H, W, 3), (30 + 8 * i, 90, 160 - 5 * i), np.uint8)
        f[16:56, (4 * i) % 80:(4 * i) % 80 + 40] = (240, 220, 30)
        frames.append(f)
    return frames


def write_recording(folder: Path, name: str, lines: list[dict], n_frames: int | None = None) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    frames = video_frames(len(lines) if n_frames is None else n_frames)
    with imageio.get_writer(folder / f"{name}.mp4", format="FFMPEG", fps=20, codec="libx264", quality=9,
                            macro_block_size=8, ffmpeg_log_level="error") as writer:
        for f in frames:
            writer.append_data(f)
    (folder / f"{name}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return frames


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    src = tmp_path_factory.mktemp("vpt")
    lines = [vpt_line(i, **kw) for i, (kw, _) in enumerate(SCRIPT)]
    frames = write_recording(src / "8.0", "cheeky-cornflower-setter-74ae6c2eae2e-20220315-122354", lines)
    write_recording(src, "second-recording", [vpt_line(i, keys=("w",)) for i in range(12)])
    return src, frames


def test_import_python_api(recordings, tmp_path):
    src, frames = recordings
    result = import_vpt_recordings(src, tmp_path / "store", frame_size=32, progress=False)
    assert (result.recordings_found, result.imported, result.skipped_existing) == (2, 2, 0)
    assert result.steps_imported == len(SCRIPT) - 1 + 11
    store = EpisodeStore.open(tmp_path / "store")
    assert store.metadata == {"format": "worldsim-episodes", "version": 1, **minerl_env_metadata(frame_size=32)}
    episodes = {ep.meta["source"]: ep for _, ep in store.iter_episodes()}
    ep = episodes["cheeky-cornflower-setter-74ae6c2eae2e-20220315-122354.mp4"]
    assert ep.meta["source_path"] == "8.0/cheeky-cornflower-setter-74ae6c2eae2e-20220315-122354.mp4"
    assert ep.frames.shape == (len(SCRIPT), 32, 32, 3)
    assert [ACTION_MEANINGS[a] for a in ep.actions] == [name for _, name in SCRIPT[:-1]]
    assert ep.meta["gui_open_frames"] == 1 and ep.meta["null_action_frames"] == 3
    assert not ep.terminated.any() and ep.truncated.tolist() == [False] * (len(SCRIPT) - 2) + [True]
    assert not ep.rewards.any()
    np.testing.assert_allclose(ep.timestamps, np.arange(len(SCRIPT)) / 20)
    np.testing.assert_allclose(ep.state["agent_pos"][3], [841.66, 63.0, 24.95], rtol=1e-5)
    assert ep.state["agent_yaw_pitch"].shape == (len(SCRIPT), 2)
    # frames survive lossy video compression (compare loosely) and keep their order
    import cv2

    expected = np.stack([cv2.resize(f, (32, 32), interpolation=cv2.INTER_AREA) for f in frames]).astype(float)
    err = np.abs(ep.frames.astype(float) - expected).mean(axis=(1, 2, 3))
    assert err.max() < 12, err
    assert np.abs(ep.frames[5].astype(float) - expected[6]).mean() > err[5]


def test_import_cli_and_resume(recordings, tmp_path, capsys):
    from worldsim.cli import main

    src, _ = recordings
    out = tmp_path / "minerl"
    assert main(["import-minerl", f"src={src}", f"data_dir={out}", "progress=false"]) == 0
    assert "imported 2 of 2 recordings" in capsys.readouterr().out
    store = EpisodeStore.open(out)
    assert len(store.episode_paths()) == 2
    store.check_compatible(minerl_env_metadata(), what="the live adapter")
    assert main(["import-minerl", f"src={src}", f"data_dir={out}", "progress=false"]) == 0
    assert "imported 0 of 2 recordings" in capsys.readouterr().out
    assert len(EpisodeStore.open(out).episode_paths()) == 2
    assert main(["import-minerl", f"data_dir={out}"]) == 1  # src missing
    assert "src=" in capsys.readouterr().err


def test_mismatched_jsonl_is_named(tmp_path):
    write_recording(tmp_path / "src", "short", [vpt_line(i) for i in range(8)], n_frames=10)
    with pytest.raises(VPTImportError, match=r"short\.jsonl has 8 action lines but .*short\.mp4 has 10 frames"):
        import_vpt_recordings(tmp_path / "src", tmp_path / "out", progress=False)
    result = import_vpt_recordings(tmp_path / "src", tmp_path / "out", progress=False, on_error="skip")
    assert result.imported == 0 and "short.mp4" in result.failed


def test_corrupt_video_and_missing_jsonl_are_named(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    (src / "broken.jsonl").write_text("".join(json.dumps(vpt_line(i)) + "\n" for i in range(5)))
    with pytest.raises(VPTImportError, match=r"broken\.mp4"):
        import_vpt_recordings(src, tmp_path / "out", progress=False)
    (src / "lonely.mp4").write_bytes(b"")
    with pytest.raises(VPTImportError, match=r"lonely\.mp4.*\.jsonl"):
        import_vpt_recordings(src, tmp_path / "out", progress=False)
    with pytest.raises(VPTImportError, match="No .mp4 videos"):
        import_vpt_recordings(tmp_path / "out", tmp_path / "out2", progress=False)
