"""Where dreams start: contexts of real recorded frames, drawn from an episode store."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from worldsim.data.dataset import WindowDataset
from worldsim.data.store import EpisodeStore


class RecordedContexts:
    """Uniformly drawn windows of ``context_frames`` consecutive real frames (and the actions between them).

    ``split`` is the store split to draw from (``train``, ``val`` or ``all``); use ``val`` to start
    dreams from situations the world model never trained on.
    """

    def __init__(self, data_dir: str | Path, context_frames: int, split: str = "train", val_fraction: float = 0.1,
                 env_meta: dict | None = None) -> None:
        store = EpisodeStore.open(data_dir)
        if env_meta is not None:
            store.check_compatible(env_meta, what="the world model's checkpoint")
        self.data = WindowDataset(store, context_frames, split, val_fraction)

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """frames (C, h, w, 3) uint8 and actions (C-1,) int64 between them."""
        i = int(rng.integers(len(self.data)))
        window = self.data[i]
        return np.ascontiguousarray(window.frames.permute(0, 2, 3, 1).numpy()), window.actions.numpy()
