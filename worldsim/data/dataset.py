"""Fixed-length windows of episodes, sampled uniformly over every valid start position.

A window of ``length`` frames starting at frame ``s`` of an episode holds ``frames[s : s + length]``
and the ``length - 1`` transitions between them (``actions``, ``rewards``, end targets). Windows
never cross episode boundaries; episodes shorter than a window are left out.

The episodes of a split are decompressed once into one contiguous uint8 tensor (a 60k-step
64×64 Atari dataset is 0.7 GB of RAM), so a batch is one gather: :meth:`WindowDataset.sample` draws
a whole batch with a seeded ``torch.Generator``, far faster than a per-item ``DataLoader``. The
class is also a regular ``torch.utils.data.Dataset`` (item ``i`` is the ``i``-th valid window).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from worldsim.data.store import EpisodeStore, StoreError


class WindowBatch(NamedTuple):
    frames: torch.Tensor  # (b, t, c, h, w) uint8
    actions: torch.Tensor  # (b, t-1) int64
    rewards: torch.Tensor  # (b, t-1) float32
    terminated: torch.Tensor  # (b, t-1) bool: the end head's target, the episode ends within end_within transitions


def end_targets(terminated: np.ndarray, within: int = 1) -> np.ndarray:
    """The episode-end head's targets of one episode's transitions (t,): transition ``i`` is positive
    when the episode ends (``terminated``) at one of the transitions ``i .. i + within - 1``; with
    ``within`` = 1, ``terminated`` itself. A longer target lets the head see an end coming from what the
    frames show: a Breakout life ends where the lives digit drops, 5-9 steps after the ball is gone,
    a timer longer than the model's context (docs/agents.md)."""
    if within < 1:
        raise ValueError(f"model.end_within={within}: the end target spans at least 1 transition (1 = the end itself).")
    out = np.zeros(len(terminated), dtype=bool)
    ends = np.flatnonzero(terminated)
    for e in ends:  # (only the last transition of an episode can end it)
        out[max(0, e - within + 1) : e + 1] = True
    return out


class WindowDataset(torch.utils.data.Dataset):
    def __init__(self, store: EpisodeStore, length: int, split: str = "train", val_fraction: float = 0.1,
                 max_episodes: int | None = None, progress: bool = False, end_within: int = 1) -> None:
        if length < 1:  # one frame: the context of a model that sees one frame; training windows need 2 or more
            raise ValueError(f"a window needs at least 1 frame, got length={length}.")
        self.store = store
        self.length = int(length)
        names = store.split_names(split, val_fraction)[:max_episodes]
        frames, actions, rewards, terminated, targets = [], [], [], [], []
        offset = 0
        self.episode_names: list[str] = []
        self.episode_lengths: list[int] = []
        it = store.iter_episodes(names)
        for name, ep in tqdm(it, total=len(names), desc=f"loading {split} episodes", disable=not progress):
            t = len(ep)
            if t + 1 < self.length:
                continue
            self.episode_names.append(name)
            frames.append(torch.from_numpy(ep.frames))
            # Pad transitions to t+1 so frames and transitions share one index.
            actions.append(torch.from_numpy(np.append(ep.actions, 0)))
            rewards.append(torch.from_numpy(np.append(ep.rewards, 0.0).astype(np.float32)))
            terminated.append(torch.from_numpy(np.append(ep.terminated, False)))
            targets.append(torch.from_numpy(np.append(end_targets(ep.terminated, end_within), False)))
            self.episode_lengths.append(t + 1)  # frames of each episode, back to back in the flat arrays
            offset += t + 1
        if not frames:
            raise StoreError(
                f"No {split!r} episode in {store.root} has the {self.length} frames a window needs "
                f"({len(names)} episodes in the split). Collect more or longer episodes, use a shorter "
                "context/horizon, or lower val_fraction."
            )
        self.frames = torch.cat(frames)  # (N, h, w, c) uint8, all episodes back to back
        self.actions = torch.cat(actions)
        self.rewards = torch.cat(rewards)
        self.terminated = torch.cat(terminated)  # the game's episode ends
        self.end_targets = torch.cat(targets)  # the end head's targets (see end_targets)
        self.starts = self.starts_for(self.length)  # valid window starts into the flat arrays
        self.num_steps = int(offset - len(frames))

    def __len__(self) -> int:
        return int(self.starts.numel())

    @property
    def end_starts(self) -> torch.Tensor:
        """Window starts whose transitions include an episode end (computed once)."""
        if not hasattr(self, "_end_starts"):
            ends = torch.cat([torch.zeros(1, dtype=torch.long), self.terminated.long().cumsum(0)])
            count = ends[self.starts + self.length - 1] - ends[self.starts]  # ends among transitions s .. s+t-2
            self._end_starts = self.starts[count > 0]
        return self._end_starts

    def ended_episode_frames(self, min_frames: int = 1, count: int | None = None,
                             generator: torch.Generator | None = None) -> torch.Tensor:
        """Flat indices of the last frame of every episode that ends (its last transition
        ``terminated``; a cut episode does not) and holds at least ``min_frames`` frames; with a
        ``generator``, ``count`` of them in its random order (the held-out ends of evaluation)."""
        lengths = torch.tensor(self.episode_lengths)
        last = lengths.cumsum(0) - 1
        ends = last[(lengths >= min_frames) & self.terminated[(last - 1).clamp_min(0)]]
        if generator is not None:
            ends = ends[torch.randperm(len(ends), generator=generator)]
        return ends[:count]

    @staticmethod
    def windows_ending_at(frames: torch.Tensor, length: int) -> torch.Tensor:
        """Flat indices (n, length) of the windows whose last frame is each of ``frames`` (n,)."""
        return frames[:, None] - (length - 1) + torch.arange(length)

    def window_indices(self, batch_size: int, generator: torch.Generator | None = None,
                       end_share: float = 0.0) -> torch.Tensor:
        """Flat frame indices (b, t) of ``batch_size`` windows drawn uniformly over valid positions.

        With ``end_share`` > 0 each window is, with that probability, drawn instead among the windows
        that contain an episode end (rare events: one per episode), so an end head sees enough of them.
        Gather any per-frame array with them (frames, precomputed latents); transitions use ``idx[:, :-1]``.
        """
        pick = self.starts[torch.randint(len(self), (batch_size,), generator=generator)]
        if end_share > 0:
            swap = torch.rand((batch_size,), generator=generator) < end_share
            end_pick = torch.randint(max(len(self.end_starts), 1), (batch_size,), generator=generator)
            if len(self.end_starts):
                pick = torch.where(swap, self.end_starts[end_pick], pick)
        return pick[:, None] + torch.arange(self.length)

    def starts_for(self, length: int) -> torch.Tensor:
        """Valid starts of windows of ``length`` (>= 1) frames over the flat arrays (``starts`` for its own)."""
        if length < 1:
            raise ValueError(f"a window needs at least 1 frame, got length={length}.")
        offsets = [0, *torch.tensor(self.episode_lengths).cumsum(0).tolist()]
        per_episode = [torch.arange(o, o + f + 1 - length) for o, f in zip(offsets, self.episode_lengths) if f >= length]
        return torch.cat(per_episode) if per_episode else torch.zeros(0, dtype=torch.long)

    def transitions(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """actions, rewards, end targets (b, t-1) of the windows at flat indices ``idx`` (b, t)."""
        tr = idx[:, :-1]
        return self.actions[tr], self.rewards[tr], self.end_targets[tr]

    def gather(self, idx: torch.Tensor) -> WindowBatch:
        """The windows at flat frame indices ``idx`` (b, t), frames as (b, t, c, h, w)."""
        frames = self.frames[idx].permute(0, 1, 4, 2, 3)  # (b, t, h, w, c) -> (b, t, c, h, w)
        return WindowBatch(frames.contiguous(), *self.transitions(idx))

    def distinct_windows(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """Flat frame indices (count, t) of ``count`` distinct windows (fewer if the split holds fewer),
        in a seeded random order: the held-out windows of evaluation and videos."""
        picks = torch.randperm(len(self), generator=generator)[:count]
        return self.starts[picks][:, None] + torch.arange(self.length)

    def __getitem__(self, i: int) -> WindowBatch:
        idx = self.starts[i : i + 1, None] + torch.arange(self.length)  # (1, t)
        return WindowBatch(*(x[0] for x in self.gather(idx)))

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> WindowBatch:
        """A batch of windows drawn uniformly (with replacement) over all valid positions."""
        return self.gather(self.window_indices(batch_size, generator))
