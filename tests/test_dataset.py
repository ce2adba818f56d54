"""WindowDataset on synthetic episodes whose pixels encode (episode, step), so alignment is checkable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worldsim.data.dataset import WindowBatch, WindowDataset
from worldsim.data.episode import Episode
from worldsim.data.store import EpisodeStore, StoreError

SHAPE = (4, 6, 3)  # h != w so a wrong permute shows up


def synthetic_episode(e: int, t: int) -> Episode:
    """Frame i has channel 0 = episode e, channel 1 = i, channel 2 = 7; transition i encodes (e, i)."""
    frames = np.zeros((t + 1, *SHAPE), np.uint8)
    frames[..., 0] = e
    frames[..., 1] = np.arange(t + 1)[:, None, None]
    frames[..., 2] = 7
    terminated = np.zeros(t, bool)
    if t:
        terminated[-1] = True
    return Episode(frames=frames, actions=np.arange(t, dtype=np.int64) + 1000 * e + 1,
                   rewards=np.arange(t, dtype=np.float32) + 0.5, terminated=terminated,
                   truncated=np.zeros(t, bool))


def make_store(root, lengths: list[int]) -> EpisodeStore:
    meta = {"env": "synthetic", "env_kwargs": {}, "frame_shape": list(SHAPE), "num_actions": 4,
            "action_meanings": ["a", "b", "c", "d"], "realtime": False}
    store = EpisodeStore.create(root, meta)
    for e, t in enumerate(lengths):
        store.write(synthetic_episode(e, t), index=e)
    return store


LENGTHS = [3, 10, 1, 7, 0, 5, 2]


def expected_windows(lengths: list[int], length: int) -> list[tuple[int, int]]:
    """(episode, start) of every valid window."""
    return [(e, s) for e, t in enumerate(lengths) for s in range(max(0, t + 2 - length))]


def check_window(frames: torch.Tensor, actions, rewards, terminated, lengths: list[int]) -> tuple[int, int]:
    """Assert one window (t, c, h, w) is a contiguous, aligned piece of one episode; return (episode, start)."""
    L = frames.shape[0]
    assert frames.shape == (L, 3, SHAPE[0], SHAPE[1]) and frames.dtype == torch.uint8
    assert (frames[:, 2] == 7).all(), "channels are in the wrong order"
    ep = frames[:, 0].flatten(1)
    step = frames[:, 1].flatten(1)
    assert (ep == ep[:, :1]).all() and (step == step[:, :1]).all()
    e, s = int(ep[0, 0]), int(step[0, 0])
    assert (ep[:, 0] == e).all(), "a window crossed an episode boundary"
    assert step[:, 0].tolist() == list(range(s, s + L))
    assert s + L - 1 <= lengths[e]
    assert actions.tolist() == [1000 * e + 1 + i for i in range(s, s + L - 1)]
    assert rewards.tolist() == [i + 0.5 for i in range(s, s + L - 1)]
    assert terminated.tolist() == [i == lengths[e] - 1 for i in range(s, s + L - 1)]
    return e, s


@pytest.mark.parametrize("length", [2, 3, 4, 8])
def test_every_window_is_aligned_and_counted(tmp_path, length):
    store = make_store(tmp_path, LENGTHS)
    ds = WindowDataset(store, length, split="all")
    want = expected_windows(LENGTHS, length)
    assert len(ds) == len(want) == sum(max(0, t + 1 - length + 1) for t in LENGTHS)
    got = []
    for i in range(len(ds)):
        item = ds[i]
        assert isinstance(item, WindowBatch)
        assert item.actions.shape == item.rewards.shape == item.terminated.shape == (length - 1,)
        assert item.actions.dtype == torch.int64 and item.rewards.dtype == torch.float32
        assert item.terminated.dtype == torch.bool
        got.append(check_window(*item, LENGTHS))
    assert sorted(got) == want
    # Episodes shorter than the window are left out.
    assert ds.episode_names == [f"{e:06d}" for e, t in enumerate(LENGTHS) if t + 1 >= length]
    kept = [t for t in LENGTHS if t + 1 >= length]
    assert ds.num_steps == sum(kept) and ds.frames.shape[0] == sum(t + 1 for t in kept)


def test_sample_layout_and_alignment(tmp_path):
    store = make_store(tmp_path, LENGTHS)
    ds = WindowDataset(store, 4, split="all")
    batch = ds.sample(64, torch.Generator().manual_seed(0))
    assert batch.frames.shape == (64, 4, 3, SHAPE[0], SHAPE[1])
    assert batch.actions.shape == batch.rewards.shape == batch.terminated.shape == (64, 3)
    for b in range(64):
        e, s = check_window(batch.frames[b], batch.actions[b], batch.rewards[b], batch.terminated[b], LENGTHS)
        # __getitem__ of the same window gives the same tensors.
        i = expected_windows(LENGTHS, 4).index((e, s))
        item = ds[i]
        assert torch.equal(item.frames, batch.frames[b]) and torch.equal(item.actions, batch.actions[b])
        assert torch.equal(item.rewards, batch.rewards[b]) and torch.equal(item.terminated, batch.terminated[b])


def test_sample_is_reproducible_and_covers_every_start(tmp_path):
    store = make_store(tmp_path, LENGTHS)
    ds = WindowDataset(store, 3, split="all")
    a = ds.sample(32, torch.Generator().manual_seed(123))
    b = ds.sample(32, torch.Generator().manual_seed(123))
    c = ds.sample(32, torch.Generator().manual_seed(124))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a.frames, c.frames)
    idx = ds.window_indices(4000, torch.Generator().manual_seed(0))
    assert idx.shape == (4000, 3)
    starts, counts = torch.unique(idx[:, 0], return_counts=True)
    assert starts.tolist() == ds.starts.tolist(), "some valid start was never sampled"
    # Uniform over windows: with 4000 draws over 22 starts every count is near 182.
    assert counts.min() > 4000 / len(ds) / 2 and counts.max() < 4000 / len(ds) * 2


def test_end_share_oversamples_windows_holding_an_episode_end(tmp_path):
    store = make_store(tmp_path, LENGTHS)
    ds = WindowDataset(store, 3, split="all")
    has_end = [bool(ds.terminated[s : s + 2].any()) for s in ds.starts.tolist()]
    assert ds.end_starts.tolist() == [s for s, e in zip(ds.starts.tolist(), has_end) if e]
    assert len(ds.end_starts) == 5  # episodes of length >= 2, each one window whose last transition ends it

    def end_rate(share):
        idx = ds.window_indices(4000, torch.Generator().manual_seed(0), end_share=share)
        return ds.transitions(idx)[2].any(dim=1).float().mean().item()

    uniform = len(ds.end_starts) / len(ds)
    assert abs(end_rate(0.0) - uniform) < 0.03
    assert abs(end_rate(0.5) - (0.5 + 0.5 * uniform)) < 0.03
    assert end_rate(1.0) == 1.0


def test_transitions_of_window_indices(tmp_path):
    store = make_store(tmp_path, [6])
    ds = WindowDataset(store, 3, split="all")
    idx = ds.window_indices(10, torch.Generator().manual_seed(0))
    actions, rewards, terminated = ds.transitions(idx)
    for row, a in zip(idx, actions):
        s = int(row[0])
        assert a.tolist() == [1 + s, 2 + s]


def test_all_episodes_too_short_raises_with_advice(tmp_path):
    store = make_store(tmp_path, [1, 2, 0])
    with pytest.raises(StoreError, match="Collect more or longer episodes"):
        WindowDataset(store, 5, split="all")


def test_window_length_must_be_at_least_one(tmp_path):
    store = make_store(tmp_path, [3])
    with pytest.raises(ValueError, match="at least 1 frame"):
        WindowDataset(store, 0, split="all")
    one = WindowDataset(store, 1, split="all")  # the contexts of a one-frame model: every frame
    assert len(one) == 4 and one.gather(one.window_indices(2, torch.Generator().manual_seed(0))).actions.shape == (2, 0)


def test_max_episodes(tmp_path):
    store = make_store(tmp_path, LENGTHS)
    ds = WindowDataset(store, 2, split="all", max_episodes=2)
    assert ds.episode_names == ["000000", "000001"] and len(ds) == 3 + 10


def test_train_and_val_are_disjoint(tmp_path):
    lengths = [4] * 30
    store = make_store(tmp_path, lengths)
    train = WindowDataset(store, 3, split="train")
    val = WindowDataset(store, 3, split="val")
    assert set(train.episode_names).isdisjoint(val.episode_names)
    assert sorted(train.episode_names + val.episode_names) == store.split_names("all")
    assert len(train) + len(val) == len(WindowDataset(store, 3, split="all"))
    val_eps = {int(n) for n in val.episode_names}
    batch = train.sample(256, torch.Generator().manual_seed(0))
    assert not val_eps & set(batch.frames[:, 0, 0, 0, 0].tolist())


def test_end_targets_mark_the_last_steps_of_an_ended_episode_only():
    from worldsim.data.dataset import end_targets

    ended, cut = np.zeros(6, bool), np.zeros(6, bool)
    ended[-1] = True
    assert end_targets(ended, 1).tolist() == ended.tolist()
    assert end_targets(ended, 3).tolist() == [False, False, False, True, True, True]
    assert end_targets(ended, 10).all()  # longer than the episode: every step
    assert not end_targets(cut, 3).any()  # an episode cut short (truncated) never ends
    with pytest.raises(ValueError, match="end_within"):
        end_targets(ended, 0)


@pytest.mark.parametrize("within", [1, 3])
def test_windows_carry_the_end_target_and_never_cross_episodes(tmp_path, within):
    store = make_store(tmp_path, LENGTHS)
    ds = WindowDataset(store, 3, split="all", end_within=within)
    for i in range(len(ds)):
        w = ds[i]
        e, s = int(w.frames[0, 0, 0, 0]), int(w.frames[0, 1, 0, 0])
        t = LENGTHS[e]  # transition j of episode e ends within `within` steps when j >= t - within
        assert w.terminated.tolist() == [j >= t - within for j in range(s, s + 2)]
    assert int(ds.terminated.sum()) == sum(t >= 2 for t in LENGTHS)  # the game's own ends (episodes holding a window) stay
