"""Recording gameplay: worker counts, replayable episodes, resuming, policies, kill -9 safety."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from worldsim.data.collect import collect, describe_env
from worldsim.data.policies import RandomPolicy, StickyRandomPolicy, make_policy
from worldsim.data.store import EpisodeStore, StoreError
from worldsim.envs import make_env

BOXING = {"game": "boxing", "max_episode_steps": 100}


def hashes(store: EpisodeStore) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in store.episode_paths()}


def read_all(store: EpisodeStore) -> dict[str, object]:
    """Every episode of the store, asserting that none is unreadable."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        infos, errors = store.infos()
        assert errors == []
        return dict(store.iter_episodes(on_error="raise"))


def replay(store: EpisodeStore, env_kwargs: dict) -> None:
    """Re-play each worker's episodes on a fresh env: the recorded frames must follow the recorded actions.

    A worker's first episode starts from ``reset(seed=reset_seed)``; the vector env autoresets the
    following ones without a seed, so the same env instance continues from its own generator.
    """
    episodes = read_all(store)
    workers = sorted({ep.meta["worker"] for ep in episodes.values()})
    for w in workers:
        env = make_env("atari", **env_kwargs)
        mine = [ep for _, ep in sorted(episodes.items()) if ep.meta["worker"] == w]
        for k, ep in enumerate(mine):
            assert (ep.meta["reset_seed"] is not None) == (k == 0)
            obs, _ = env.reset(seed=ep.meta["reset_seed"]) if k == 0 else env.reset()
            assert np.array_equal(obs, ep.frames[0])
            for i, a in enumerate(ep.actions):
                obs, r, term, trunc, _ = env.step(int(a))
                assert np.array_equal(obs, ep.frames[i + 1]), f"worker {w} episode {k} step {i}"
                assert r == ep.rewards[i] and term == ep.terminated[i]
        env.close()


def check_store(store: EpisodeStore, steps: int, env_kwargs: dict) -> None:
    episodes = read_all(store)
    assert store.total_steps() >= steps
    for name, ep in episodes.items():
        assert ep.frames.shape == (len(ep) + 1, 64, 64, 3) and ep.frames.dtype == np.uint8
        assert 0 < len(ep) <= env_kwargs["max_episode_steps"]
        assert ep.actions.min() >= 0 and ep.actions.max() < store.metadata["num_actions"]
        assert ep.terminated[-1] or ep.truncated[-1], f"{name} does not end"
        assert ep.meta["policy"] == "sticky_random"
    assert store.metadata["env"] == "atari" and store.metadata["frame_shape"] == [64, 64, 3]


@pytest.mark.parametrize("num_workers", [1, 2])
def test_collect_records_replayable_episodes(tmp_path, num_workers):
    result = collect("atari", BOXING, str(tmp_path), steps=300, num_workers=num_workers, seed=1, progress=False)
    store = EpisodeStore.open(tmp_path)
    assert result.steps_before == 0 and result.steps_recorded >= 300
    assert result.episodes_written == len(store.episode_paths())
    assert store.total_steps() == result.steps_recorded
    check_store(store, 300, BOXING)
    # 100-step episodes: each worker finishes full episodes, the rest is cut and marked truncated.
    per_worker = 300 // num_workers  # 1 worker: 3 x 100; 2 workers: 100 + 50 (cut) each
    full, rest = divmod(per_worker, 100)
    want = [100] * full * num_workers + ([rest] * num_workers if rest else [])
    assert sorted(i.length for i in store.infos()[0]) == sorted(want)
    cut = [ep for ep in read_all(store).values() if ep.meta["cut_by_recorder"]]
    assert len(cut) == (num_workers if rest else 0) and all(ep.truncated[-1] for ep in cut)
    replay(store, BOXING)


def test_rerun_is_a_no_op_and_a_larger_total_tops_up(tmp_path, capsys):
    collect("atari", BOXING, str(tmp_path), steps=150, num_workers=1, progress=False)
    store = EpisodeStore.open(tmp_path)
    old = hashes(store)
    assert sorted(old) == ["000000.npz", "000001.npz"]

    again = collect("atari", BOXING, str(tmp_path), steps=150, num_workers=1, progress=False)
    assert again.steps_recorded == 0 and again.episodes_written == 0 and again.steps_before == 150
    assert "nothing to record" in capsys.readouterr().out
    assert hashes(store) == old

    more = collect("atari", BOXING, str(tmp_path), steps=320, num_workers=1, progress=False)
    assert more.steps_before == 150 and more.steps_recorded == 170
    new = hashes(store)
    assert {k: new[k] for k in old} == old, "topping up changed episodes already on disk"
    assert sorted(new) == [f"{i:06d}.npz" for i in range(4)]
    check_store(store, 320, BOXING)
    # The resumed run does not replay the first run's episodes.
    eps = read_all(store)
    assert not np.array_equal(eps["000000"].actions[:50], eps["000002"].actions[:50])


def test_collect_into_store_of_another_env_refuses(tmp_path):
    collect("atari", BOXING, str(tmp_path), steps=20, num_workers=1, progress=False)
    before = hashes(EpisodeStore.open(tmp_path))
    with pytest.raises(StoreError, match="different environment"):
        collect("atari", {"game": "pong", "max_episode_steps": 100}, str(tmp_path), steps=40, num_workers=1,
                progress=False)
    assert hashes(EpisodeStore.open(tmp_path)) == before


@pytest.mark.parametrize("steps", [0, -5])
def test_collect_needs_positive_steps(tmp_path, steps):
    with pytest.raises(ValueError, match="steps must be positive"):
        collect("atari", BOXING, str(tmp_path), steps=steps, num_workers=1, progress=False)
    assert not (tmp_path / "dataset.json").exists()


def test_describe_env():
    meta = describe_env("atari", {"game": "pong", "frame_size": [48, 64]})
    assert meta["env"] == "atari" and meta["frame_shape"] == [48, 64, 3] and meta["realtime"] is False
    assert meta["num_actions"] == len(meta["action_meanings"]) == 6
    assert meta["env_kwargs"] == {"game": "pong", "frame_size": [48, 64]}


# ---------------------------------------------------------------------- policies
def runs(seq: np.ndarray) -> list[int]:
    """Lengths of the runs of equal consecutive values."""
    change = np.flatnonzero(np.diff(seq)) + 1
    return np.diff(np.concatenate([[0], change, [len(seq)]])).tolist()


@pytest.mark.parametrize("min_hold, max_hold", [(1, 9), (3, 5), (4, 4)])
def test_sticky_random_holds_actions(min_hold, max_hold):
    # Many actions make drawing the same action twice in a row (merging two runs) vanishingly rare.
    pol = StickyRandomPolicy(10**9, 3, seed=0, min_hold=min_hold, max_hold=max_hold)
    acts = np.stack([pol.act(None) for _ in range(2000)])  # (steps, envs)
    assert acts.shape == (2000, 3) and acts.dtype == np.int64
    for env in range(3):
        lengths = runs(acts[:, env])[:-1]  # the last run may be unfinished
        assert min(lengths) >= min_hold and max(lengths) <= max_hold
        assert set(lengths) == set(range(min_hold, max_hold + 1))
    again = StickyRandomPolicy(10**9, 3, seed=0, min_hold=min_hold, max_hold=max_hold)
    assert np.array_equal(np.stack([again.act(None) for _ in range(2000)]), acts)


def test_sticky_random_redraws_after_episode_end():
    pol = StickyRandomPolicy(10**9, 2, seed=0, min_hold=50, max_hold=50)
    first = pol.act(None)
    pol.episode_done(1)
    second = pol.act(None)
    assert second[0] == first[0] and second[1] != first[1]


def test_random_policy_covers_all_actions():
    pol = RandomPolicy(18, 4, seed=0)
    acts = np.stack([pol.act(None) for _ in range(200)])
    assert acts.shape == (200, 4) and acts.dtype == np.int64
    assert set(acts.ravel().tolist()) == set(range(18))
    assert len(set(runs(acts[:, 0]))) > 1


@pytest.mark.parametrize("kwargs", [{"min_hold": 0}, {"min_hold": 5, "max_hold": 4}, {"max_hold": 0}])
def test_bad_hold_raises(kwargs):
    with pytest.raises(ValueError, match="min_hold <= max_hold"):
        make_policy("sticky_random", 6, 1, 0, **kwargs)


def test_make_policy_errors(tmp_path):
    with pytest.raises(ValueError, match="Unknown policy 'greedy'"):
        make_policy("greedy", 6, 1, 0)
    with pytest.raises(ValueError, match="policy.path"):
        make_policy("agent", 6, 1, 0)
    agent = make_policy("agent", 6, 2, 0, actor=lambda obs: np.full(len(obs), 3))
    assert agent.act(np.zeros((2, 4, 4, 3), np.uint8)).tolist() == [3, 3]
    assert isinstance(make_policy("random", 6, 2, 0), RandomPolicy)


# ---------------------------------------------------------------------- kill -9
def test_kill_9_loses_nothing_on_disk_and_resumes(tmp_path):
    data = tmp_path / "store"
    cmd = [sys.executable, "-m", "worldsim.cli", "collect", "env=boxing", "steps=4000", "num_workers=1",
           f"data_dir={data}", "progress=false", "env.kwargs.max_episode_steps=200"]
    episodes = data / "episodes"

    def finished() -> list[Path]:
        return sorted(p for p in episodes.glob("*.npz") if not p.name.startswith(".")) if episodes.exists() else []

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(finished()) < 2:
            assert proc.poll() is None, "collect exited before it was killed"
            assert time.monotonic() < deadline, "collect wrote fewer than 2 episodes in 60 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    store = EpisodeStore.open(data)
    before = hashes(store)
    assert len(before) >= 2
    # Temp files of an interrupted write may remain; the store must not list or trip over them.
    assert all(not p.name.startswith(".") for p in store.episode_paths())
    episodes_before = read_all(store)
    assert all(len(ep) == 200 for ep in episodes_before.values())
    steps_before = store.total_steps()
    assert steps_before < 4000

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"now holds {store.total_steps()} steps" in done.stdout
    store = EpisodeStore.open(data)
    after = hashes(store)
    assert {k: after[k] for k in before} == before, "resuming changed episodes written before the kill"
    assert store.total_steps() >= 4000
    check_store(store, 4000, {"max_episode_steps": 200})


def test_inverse_actions_come_from_the_names():
    from worldsim.data.policies import inverse_actions

    assert inverse_actions(["turn_left", "turn_right", "move_forward"]) == {0: 1, 1: 0}
    assert inverse_actions(["turn_left", "turn_right", "move_forward", "move_back", "pickup"]) == {0: 1, 1: 0, 2: 3, 3: 2}
    minetest = ["noop", "forward", "back", "left", "right", "jump", "camera_up_15", "camera_down_15",
                "forward_camera_left_15", "forward_camera_right_15"]
    inv = inverse_actions(minetest)
    assert inv[1] == 2 and inv[3] == 4 and inv[6] == 7 and 0 not in inv and 5 not in inv
    assert 8 not in inv  # forward + camera left: "back_camera_right" is not an action
    assert inverse_actions(["NOOP", "FIRE", "UP", "DOWN", "UPLEFT", "DOWNRIGHT"]) == {2: 3, 3: 2, 4: 5, 5: 4}


def test_revisit_excursions_come_back():
    from worldsim.data.policies import RevisitPolicy

    names = ["turn_left", "turn_right", "move_forward", "move_back"]
    effect = {0: (1, 0), 1: (-1, 0), 2: (0, 1), 3: (0, -1)}
    pol = RevisitPolicy(4, 1, seed=0, action_meanings=names, revisit_prob=1.0, max_segments=3)
    pose, returns = np.zeros(2, int), 0
    for _ in range(2000):
        pose += effect[int(pol.act(np.zeros((1, 8, 8, 3), np.uint8))[0])]
        if not pol.plans[0]:  # an excursion just ended: back where it started
            assert pose.tolist() == [0, 0]
            returns += 1
    assert returns > 50
    mixed = RevisitPolicy(4, 2, seed=1, action_meanings=names, revisit_prob=0.5)
    acts = np.stack([mixed.act(np.zeros((2, 8, 8, 3), np.uint8)) for _ in range(500)])
    assert set(np.unique(acts)) == {0, 1, 2, 3} and not np.array_equal(acts[:, 0], acts[:, 1])
    mixed.episode_done(0)
    assert mixed.plans[0] == []


def test_revisit_needs_invertible_actions():
    with pytest.raises(ValueError, match="undo each other"):
        make_policy("revisit", 2, 1, 0, ["noop", "attack"])
    with pytest.raises(ValueError, match="revisit_prob"):
        make_policy("revisit", 2, 1, 0, ["turn_left", "turn_right"], revisit_prob=2.0)
