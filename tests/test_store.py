"""Episode format and store: validation, round trips, compatibility, corrupt files, splits."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from worldsim.cli import main as cli_main
from worldsim.data.episode import Episode, EpisodeBuilder, EpisodeFormatError
from worldsim.data.store import CorruptEpisodeError, EpisodeStore, StoreError
from worldsim.io import atomic_write_bytes

SHAPE = (8, 8, 3)


def env_meta(game: str = "boxing", frame_shape=SHAPE, num_actions: int = 18) -> dict:
    return {
        "env": "atari", "env_kwargs": {"game": game}, "frame_shape": list(frame_shape),
        "num_actions": num_actions, "action_meanings": [str(i) for i in range(num_actions)], "realtime": False,
    }


def make_episode(t: int = 5, shape=SHAPE, seed: int = 0, terminated: bool = True, **extra) -> Episode:
    rng = np.random.default_rng(seed)
    term = np.zeros(t, dtype=bool)
    trunc = np.zeros(t, dtype=bool)
    if t:
        (term if terminated else trunc)[-1] = True
    return Episode(
        frames=rng.integers(0, 256, size=(t + 1, *shape), dtype=np.uint8),
        actions=rng.integers(0, 18, size=t).astype(np.int64),
        rewards=rng.normal(size=t).astype(np.float32),
        terminated=term, truncated=trunc, **extra,
    )


def fill(store: EpisodeStore, n: int, t: int = 5) -> list[Path]:
    return [store.write(make_episode(t, seed=i)) for i in range(n)]


# ---------------------------------------------------------------------- Episode.validate
def test_valid_episode_passes():
    ep = make_episode(4, state={"pos": np.zeros((5, 2))}, timestamps=np.arange(5.0))
    assert ep.validate() is ep and len(ep) == 4 and ep.frame_shape == SHAPE


@pytest.mark.parametrize("field, value, match", [
    ("frames", np.zeros((5, *SHAPE), np.uint8), "needs 6 frames"),
    ("frames", np.zeros((6, *SHAPE), np.float32), "uint8"),
    ("frames", np.zeros((6, 8, 8), np.uint8), "uint8"),
    ("frames", np.zeros((6, 8, 8, 4), np.uint8), "uint8"),
    ("rewards", np.zeros(4, np.float32), "rewards must have shape"),
    ("terminated", np.zeros(6, bool), "terminated must have shape"),
    ("truncated", np.zeros((5, 1), bool), "truncated must have shape"),
    ("actions", np.zeros(5, np.float32), "actions must be integer"),
    ("actions", np.zeros((5, 2), np.int64), "actions must be integer"),
    ("timestamps", np.zeros(5), "timestamps"),
    ("state", {"pos": np.zeros((5, 2))}, "state 'pos'"),
])
def test_validate_rejects_bad_arrays(field, value, match):
    ep = make_episode(5)
    setattr(ep, field, value)
    with pytest.raises(EpisodeFormatError, match=match):
        ep.validate()


def test_validate_rejects_end_in_the_middle():
    ep = make_episode(5)
    ep.terminated[2] = True
    with pytest.raises(EpisodeFormatError, match="only the last step"):
        ep.validate()
    ep = make_episode(5, terminated=False)
    ep.truncated[0] = True
    with pytest.raises(EpisodeFormatError, match="only the last step"):
        ep.validate()


def test_builder_cut_marks_truncated():
    b = EpisodeBuilder(np.zeros(SHAPE, np.uint8), {"pos": np.zeros(2)}, meta={"worker": 3})
    for i in range(3):
        b.add(i, np.full(SHAPE, i, np.uint8), 1.0, False, False, {"pos": np.ones(2) * i})
    ep = b.build(cut=True)
    assert len(ep) == 3 and ep.truncated.tolist() == [False, False, True] and not ep.terminated.any()
    assert ep.state["pos"].shape == (4, 2) and ep.meta == {"worker": 3, "cut_by_recorder": True}


# ---------------------------------------------------------------------- create / open / round trip
def test_round_trip_all_arrays(tmp_path):
    store = EpisodeStore.create(tmp_path / "s", env_meta())
    ep = make_episode(
        7, state={"pos": np.arange(16, dtype=np.float32).reshape(8, 2), "flag": np.arange(8) % 2 == 0},
        timestamps=np.linspace(0.0, 1.0, 8), meta={"seed": 3, "policy": "random", "nested": {"a": [1, 2]}},
    )
    path = store.write(ep)
    assert path == tmp_path / "s" / "episodes" / "000000.npz"
    reopened = EpisodeStore.open(tmp_path / "s")
    assert reopened.metadata["format"] == "worldsim-episodes" and reopened.metadata["version"] == 1
    assert reopened.metadata["frame_shape"] == list(SHAPE)
    for ref in (path, "000000", "000000.npz"):
        back = reopened.read(ref)
        for name in ("frames", "actions", "rewards", "terminated", "truncated", "timestamps"):
            got, want = getattr(back, name), getattr(ep, name)
            assert got.dtype == want.dtype and np.array_equal(got, want), name
        assert back.state.keys() == ep.state.keys()
        for k in ep.state:
            assert back.state[k].dtype == ep.state[k].dtype and np.array_equal(back.state[k], ep.state[k])
        assert back.meta == ep.meta
    # Without timestamps / state / meta the fields come back empty.
    store.write(make_episode(3, seed=1))
    back = reopened.read("000001")
    assert back.timestamps is None and back.state == {} and back.meta == {}
    assert [i.name for i in reopened.infos()[0]] == ["000000", "000001"]
    assert reopened.total_steps() == 10 and reopened.next_index() == 2


def test_open_missing_store_says_how_to_record(tmp_path):
    with pytest.raises(StoreError, match="worldsim collect") as e:
        EpisodeStore.open(tmp_path / "nothing_here")
    assert "nothing_here" in str(e.value)


def test_open_rejects_bad_dataset_json(tmp_path):
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(StoreError, match="not valid JSON"):
        EpisodeStore.open(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(StoreError, match="not a worldsim episode store"):
        EpisodeStore.open(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"format": "worldsim-episodes", "version": 99}))
    with pytest.raises(StoreError, match="version 99"):
        EpisodeStore.open(tmp_path)


def test_create_in_non_store_folder_refuses(tmp_path):
    (tmp_path / "notes.txt").write_text("my files")
    with pytest.raises(StoreError, match="not an episode store"):
        EpisodeStore.create(tmp_path, env_meta())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_create_in_empty_or_hidden_only_folder_works(tmp_path):
    (tmp_path / ".hidden").write_text("")
    store = EpisodeStore.create(tmp_path, env_meta())
    assert (tmp_path / "dataset.json").exists() and store.episode_paths() == []


def test_create_reopens_existing_store(tmp_path):
    store = EpisodeStore.create(tmp_path, env_meta())
    fill(store, 2)
    again = EpisodeStore.create(tmp_path, env_meta())
    assert again.next_index() == 2
    with pytest.raises(StoreError, match="different environment"):
        EpisodeStore.create(tmp_path, env_meta(game="pong", num_actions=6))


def test_write_rejects_other_frame_shape(tmp_path):
    store = EpisodeStore.create(tmp_path, env_meta())
    with pytest.raises(EpisodeFormatError, match="the store holds"):
        store.write(make_episode(3, shape=(16, 16, 3)))
    assert store.episode_paths() == []


def test_check_compatible_names_differing_keys(tmp_path):
    from worldsim.data.collect import describe_env

    boxing = describe_env("atari", {"game": "boxing", "frame_size": 16})
    pong = describe_env("atari", {"game": "pong", "frame_size": 16})
    store = EpisodeStore.create(tmp_path, boxing)
    store.check_compatible(boxing)  # the same env passes
    store.check_compatible(describe_env("worldsim/Atari-v0", {"game": "boxing", "frame_size": 16}))
    with pytest.raises(StoreError) as e:
        store.check_compatible(pong, what="the config")
    msg = str(e.value)
    for key in ("num_actions", "action_meanings", "env_kwargs.game"):
        assert key in msg, key
    assert "frame_shape" not in msg and "data_dir" in msg
    with pytest.raises(StoreError, match="frame_shape"):
        store.check_compatible(describe_env("atari", {"game": "boxing", "frame_size": 32}))


# ---------------------------------------------------------------------- corrupt files
@pytest.fixture
def store_with_corrupt(tmp_path):
    store = EpisodeStore.create(tmp_path, env_meta())
    paths = fill(store, 4)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) // 2])  # cut short, as by a crash
    paths[2].write_bytes(b"this is not an npz file at all" * 10)
    return store, paths


def test_read_corrupt_names_the_file(store_with_corrupt):
    store, paths = store_with_corrupt
    for bad in paths[1:3]:
        with pytest.raises(CorruptEpisodeError, match="worldsim collect") as e:
            store.read(bad)
        assert e.value.path == bad and str(bad) in str(e.value)
    assert len(store.read(paths[0])) == 5


def test_infos_reports_corrupt_and_lists_the_rest(store_with_corrupt):
    store, paths = store_with_corrupt
    with pytest.warns(UserWarning, match="unreadable"):
        infos, errors = store.infos()
    assert [i.name for i in infos] == ["000000", "000003"]
    assert sorted(e.path for e in errors) == paths[1:3]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert store.total_steps() == 10
        assert store.split_names("all") == ["000000", "000003"]
    with pytest.raises(CorruptEpisodeError):
        store.infos(on_error="raise")


def test_iter_episodes_skips_corrupt(store_with_corrupt):
    store, _ = store_with_corrupt
    with pytest.warns(UserWarning) as record:
        names = [name for name, _ in store.iter_episodes(on_error="warn")]
    assert names == ["000000", "000003"]
    assert sum("unreadable" in str(w.message) for w in record) == 2
    with pytest.raises(CorruptEpisodeError):
        list(store.iter_episodes(on_error="raise"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [n for n, _ in store.iter_episodes(on_error="ignore")] == ["000000", "000003"]


def test_cli_info_survives_corrupt_file(store_with_corrupt, capsys):
    store, paths = store_with_corrupt
    assert cli_main(["info", f"path={store.root}"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[: out.index("\nwarning:")])
    assert summary["episodes"] == 2 and summary["steps"] == 10
    assert sorted(summary["unreadable_files"]) == [str(p) for p in paths[1:3]]
    assert out.count("warning:") == 2


def test_episode_with_inconsistent_arrays_is_corrupt(tmp_path):
    store = EpisodeStore.create(tmp_path, env_meta())
    bad = store.episode_dir / "000000.npz"
    np.savez_compressed(bad, frames=np.zeros((3, *SHAPE), np.uint8), actions=np.zeros(5, np.int64),
                        rewards=np.zeros(5, np.float32), terminated=np.zeros(5, bool), truncated=np.zeros(5, bool))
    with pytest.raises(CorruptEpisodeError, match="000000.npz"):
        store.read(bad)


# ---------------------------------------------------------------------- atomic writes
def test_atomic_writes_leave_no_temp_files(tmp_path):
    store = EpisodeStore.create(tmp_path, env_meta())
    fill(store, 3)
    assert sorted(p.name for p in store.episode_dir.iterdir()) == ["000000.npz", "000001.npz", "000002.npz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset.json", "episodes"]


def test_failed_atomic_write_leaves_nothing(tmp_path):
    target = tmp_path / "x.bin"

    def boom(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write_bytes(target, boom)
    assert list(tmp_path.iterdir()) == []


def test_temp_files_are_ignored(tmp_path):
    store = EpisodeStore.create(tmp_path, env_meta())
    fill(store, 2)
    (store.episode_dir / ".000002.npz.abc.tmp").write_bytes(b"partial")
    (store.episode_dir / ".000003.npz").write_bytes(b"partial")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        infos, errors = store.infos()
    assert [i.name for i in infos] == ["000000", "000001"] and errors == []
    assert store.next_index() == 2


# ---------------------------------------------------------------------- splits
def test_splits_are_deterministic_disjoint_and_cover_all(tmp_path):
    store = EpisodeStore.create(tmp_path, env_meta())
    fill(store, 40, t=1)
    train, val, all_ = (store.split_names(s) for s in ("train", "val", "all"))
    assert all_ == sorted(all_) and len(all_) == 40
    assert set(train).isdisjoint(val) and sorted(train + val) == all_
    assert val and train
    again = EpisodeStore.open(tmp_path)
    assert again.split_names("train") == train and again.split_names("val") == val
    assert store.split_names("val", val_fraction=0.0) == [] and store.split_names("train", 0.0) == all_


def test_splits_stable_when_episodes_are_added(tmp_path):
    store = EpisodeStore.create(tmp_path, env_meta())
    fill(store, 30, t=1)
    before = {s: set(store.split_names(s)) for s in ("train", "val")}
    assert before["val"], "30 episodes at val_fraction=0.1 should have a validation episode"
    fill(store, 30, t=1)
    after = {s: set(store.split_names(s)) for s in ("train", "val")}
    assert before["train"] <= after["train"] and before["val"] <= after["val"]


@pytest.mark.parametrize("n", [2, 3, 5])
def test_small_stores_get_a_val_episode(tmp_path, n):
    store = EpisodeStore.create(tmp_path, env_meta())
    fill(store, n, t=1)
    val, train = store.split_names("val"), store.split_names("train")
    assert len(val) >= 1 and len(train) >= 1 and len(val) + len(train) == n


def test_small_store_growth_never_moves_train_into_val(tmp_path):
    # With few episodes the fallback validation episode may change as episodes are added
    # (val -> train), but an episode a model trained on must never become validation data.
    store = EpisodeStore.create(tmp_path, env_meta())
    store.write(make_episode(1, seed=0))
    store.write(make_episode(1, seed=1))
    seen_train: set[str] = set()
    for i in range(2, 25):
        train = set(store.split_names("train"))
        assert seen_train <= train
        assert store.split_names("val")
        seen_train |= train
        store.write(make_episode(1, seed=i))


def test_one_episode_store_has_no_val(tmp_path):
    store = EpisodeStore.create(tmp_path, env_meta())
    fill(store, 1, t=1)
    assert store.split_names("val") == [] and store.split_names("train") == ["000000"]


@pytest.mark.parametrize("kwargs, match", [
    ({"split": "test"}, "split must be"),
    ({"split": "train", "val_fraction": 1.0}, "val_fraction"),
    ({"split": "val", "val_fraction": -0.1}, "val_fraction"),
])
def test_bad_split_arguments(tmp_path, kwargs, match):
    store = EpisodeStore.create(tmp_path, env_meta())
    with pytest.raises(ValueError, match=match):
        store.split_names(**kwargs)


def test_named_writes_clear_the_stale_temps_of_a_killed_write_only(tmp_path):
    """kill -9 during a checkpoint write leaves its temp file; the next write of that file removes it
    once nobody has written to it for a while, and never touches a live temp or another file's."""
    import os
    import time

    from worldsim.io import STALE_TEMP_SECONDS, atomic_write_with

    old = time.time() - STALE_TEMP_SECONDS - 60
    stale, live, other = (tmp_path / n for n in (".world_model.a1b2.tmp.pt", ".world_model.c3d4.tmp.pt",
                                                 ".tokenizer.e5f6.tmp.pt"))
    for p in (stale, live, other):
        p.write_bytes(b"partial")
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    atomic_write_with(tmp_path / "world_model.pt", lambda tmp: Path(tmp).write_bytes(b"whole"))
    assert not stale.exists() and live.exists() and other.exists()
    assert (tmp_path / "world_model.pt").read_bytes() == b"whole"
