"""The episode store: a folder of episodes on disk, one compressed file per episode.

Layout (format ``worldsim-episodes``, version 1)::

    my_store/
      dataset.json        what recorded it: env name and kwargs, frame shape, action meanings, ...
      episodes/
        000000.npz        one episode (numpy .npz, zlib-compressed), written atomically
        000001.npz
        ...

An episode file holds the arrays of :class:`~worldsim.data.episode.Episode`: ``frames`` (t+1, h, w, 3)
uint8, ``actions`` (t,) int64, ``rewards`` (t,) float32, ``terminated`` / ``truncated`` (t,) bool,
optional ``timestamps`` (t+1,) float64 and ``state/<name>`` (t+1, ...) ground-truth arrays, and
``meta`` (a JSON string: seed, policy, worker). Any numpy can read it; nothing in it runs code
(``allow_pickle=False``).

Each file is written to a temporary name in the same folder and renamed into place, so a crash
(even ``kill -9``) leaves either the whole episode or nothing. A truncated or corrupt file is
reported by name and skipped; the others still load.
"""

from __future__ import annotations

import hashlib
import json
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from worldsim.data.episode import Episode, EpisodeFormatError
from worldsim.io import atomic_write_bytes, atomic_write_json

FORMAT = "worldsim-episodes"
VERSION = 1
# Keys of the recorded env metadata that must match between a dataset and a config using it.
COMPATIBILITY_KEYS = ("env", "frame_shape", "num_actions", "action_meanings")


class StoreError(RuntimeError):
    """A store that cannot be used as asked (missing, from another env, unknown version)."""


class CorruptEpisodeError(StoreError):
    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(
            f"Episode file {path} is unreadable ({reason}). It was probably cut short by a crash or "
            "a full disk. Delete it; re-running `worldsim collect` with the same arguments records "
            "replacement steps up to the requested total."
        )
        self.path = path


@dataclass(frozen=True)
class EpisodeInfo:
    name: str
    path: Path
    length: int


class EpisodeStore:
    """Read and append episodes in one store folder. Create with :meth:`create` or :meth:`open`."""

    def __init__(self, root: Path, metadata: dict[str, Any]) -> None:
        self.root = Path(root)
        self.metadata = metadata
        self.episode_dir = self.root / "episodes"
        self._lengths: dict[str, int] = {}

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, root: str | Path, env_metadata: dict[str, Any]) -> "EpisodeStore":
        """Open ``root`` for appending, creating it if needed; an existing store must match."""
        root = Path(root)
        if (root / "dataset.json").exists():
            store = cls.open(root)
            store.check_compatible(env_metadata, what="the environment you are recording")
            for stale in store.episode_dir.glob(".*.tmp"):  # left by a writer that was killed mid-file
                stale.unlink(missing_ok=True)
            return store
        if root.exists() and any(p for p in root.iterdir() if not p.name.startswith(".")):
            raise StoreError(
                f"{root} exists, is not empty and holds no dataset.json: it is not an episode store. "
                "Choose another output folder (data_dir=...)."
            )
        metadata = {"format": FORMAT, "version": VERSION, **env_metadata}
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(root / "dataset.json", metadata)
        (root / "episodes").mkdir(exist_ok=True)
        return cls(root, metadata)

    @classmethod
    def open(cls, root: str | Path) -> "EpisodeStore":
        root = Path(root)
        meta_path = root / "dataset.json"
        if not meta_path.exists():
            raise StoreError(
                f"No episode store at {root} (no dataset.json). Record one first: "
                f"`worldsim collect env=boxing data_dir={root}`, or import recordings with "
                "`worldsim import-minerl`."
            )
        try:
            metadata = json.loads(meta_path.read_text())
        except json.JSONDecodeError as e:
            raise StoreError(f"{meta_path} is not valid JSON ({e}); restore it or record the store again.") from e
        if metadata.get("format") != FORMAT:
            raise StoreError(f"{meta_path} is not a worldsim episode store (format={metadata.get('format')!r}).")
        if metadata.get("version") != VERSION:
            raise StoreError(
                f"{root} uses store version {metadata.get('version')}, this worldsim reads version {VERSION}. "
                "Upgrade worldsim or re-record the data."
            )
        return cls(root, metadata)

    def check_compatible(self, env_metadata: dict[str, Any], what: str = "the config") -> None:
        """Raise if this store was recorded from another env / frame size / action set."""
        diffs = [
            f"{k}: store has {self.metadata.get(k)!r}, {what} has {env_metadata.get(k)!r}"
            for k in COMPATIBILITY_KEYS
            if k in env_metadata and _norm(self.metadata.get(k)) != _norm(env_metadata.get(k))
        ]
        kw_store, kw_new = self.metadata.get("env_kwargs", {}), env_metadata.get("env_kwargs", {})
        for k in ("game", "task"):
            if k in kw_new and kw_store.get(k) != kw_new.get(k):
                diffs.append(f"env_kwargs.{k}: store has {kw_store.get(k)!r}, {what} has {kw_new.get(k)!r}")
        if diffs:
            raise StoreError(
                f"The episode store at {self.root} was recorded from a different environment than "
                f"{what}:\n  " + "\n  ".join(diffs) + "\nPoint data_dir at a store recorded with this "
                "environment, or change the env config to match the store."
            )

    # ------------------------------------------------------------------ listing
    def episode_paths(self) -> list[Path]:
        if not self.episode_dir.exists():
            return []
        return sorted(p for p in self.episode_dir.glob("*.npz") if not p.name.startswith("."))

    def next_index(self) -> int:
        names = [p.stem for p in self.episode_paths()]
        return max((int(n) for n in names if n.isdigit()), default=-1) + 1

    def infos(self, on_error: str = "warn") -> tuple[list[EpisodeInfo], list[CorruptEpisodeError]]:
        """Name, path and length of every readable episode, and the errors of the unreadable ones."""
        infos, errors = [], []
        for path in self.episode_paths():
            try:
                length = self._length(path)
            except CorruptEpisodeError as e:
                errors.append(e)
                _report(e, on_error)
                continue
            infos.append(EpisodeInfo(path.stem, path, length))
        return infos, errors

    def total_steps(self) -> int:
        return sum(i.length for i in self.infos(on_error="ignore")[0])

    def _length(self, path: Path) -> int:
        key = f"{path.name}:{path.stat().st_size}"
        if key not in self._lengths:
            try:
                # Open the file ourselves: np.load leaks its handle when the zip is bad.
                with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
                    self._lengths[key] = int(z["actions"].shape[0])
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as e:
                raise CorruptEpisodeError(path, f"{type(e).__name__}: {e}") from e
        return self._lengths[key]

    # ------------------------------------------------------------------ reading / writing
    def write(self, episode: Episode, index: int | None = None) -> Path:
        episode.validate()
        if tuple(episode.frame_shape) != tuple(self.metadata["frame_shape"]):
            raise EpisodeFormatError(
                f"episode frames are {episode.frame_shape}, the store holds {tuple(self.metadata['frame_shape'])}."
            )
        index = self.next_index() if index is None else index
        path = self.episode_dir / f"{index:06d}.npz"
        arrays = {
            "frames": episode.frames,
            "actions": episode.actions.astype(np.int64),
            "rewards": episode.rewards.astype(np.float32),
            "terminated": episode.terminated.astype(bool),
            "truncated": episode.truncated.astype(bool),
            "meta": np.array(json.dumps(episode.meta)),
        }
        if episode.timestamps is not None:
            arrays["timestamps"] = episode.timestamps.astype(np.float64)
        for k, v in episode.state.items():
            arrays[f"state/{k}"] = v
        atomic_write_bytes(path, lambda f: np.savez_compressed(f, **arrays))
        return path

    def read(self, path: str | Path) -> Episode:
        path = Path(path)
        if not path.is_absolute() and not path.exists():
            path = self.episode_dir / (path.name if path.suffix == ".npz" else f"{path}.npz")
        try:
            with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:  # (see _length)
                state = {k[len("state/"):]: z[k] for k in z.files if k.startswith("state/")}
                episode = Episode(
                    frames=z["frames"], actions=z["actions"], rewards=z["rewards"],
                    terminated=z["terminated"], truncated=z["truncated"], state=state,
                    timestamps=z["timestamps"] if "timestamps" in z.files else None,
                    meta=json.loads(str(z["meta"])) if "meta" in z.files else {},
                )
            return episode.validate()
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error, EpisodeFormatError) as e:
            raise CorruptEpisodeError(path, f"{type(e).__name__}: {e}") from e

    def iter_episodes(self, names: list[str] | None = None, on_error: str = "warn") -> Iterator[tuple[str, Episode]]:
        """Yield ``(name, episode)``; unreadable files are reported (``warn``/``raise``/``ignore``) and skipped."""
        paths = self.episode_paths() if names is None else [self.episode_dir / f"{n}.npz" for n in names]
        for path in paths:
            try:
                yield path.stem, self.read(path)
            except CorruptEpisodeError as e:
                _report(e, on_error)

    # ------------------------------------------------------------------ splits
    def split_names(self, split: str, val_fraction: float = 0.1) -> list[str]:
        """Episode names of a split, by a stable hash of the name (adding episodes moves none).

        ``split`` is ``"train"``, ``"val"`` or ``"all"``. An episode is in validation when a hash of
        its name falls below ``val_fraction``, so growing a store never moves an episode between
        splits. Exception for tiny stores: when no episode hashes into validation and there are at
        least two, the one with the smallest hash is used, until the store grows one that does.
        """
        if split not in ("train", "val", "all"):
            raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}.")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}.")
        names = [i.name for i in self.infos(on_error="ignore")[0]]
        if split == "all":
            return names
        score = {n: int.from_bytes(hashlib.blake2b(n.encode(), digest_size=8).digest(), "big") / 2**64 for n in names}
        val = {n for n in names if score[n] < val_fraction}
        if not val and val_fraction > 0 and len(names) >= 2:
            val = {min(names, key=score.__getitem__)}
        chosen = val if split == "val" else set(names) - val
        return [n for n in names if n in chosen]


def _norm(v: Any) -> Any:
    return json.loads(json.dumps(v))  # tuples -> lists, numpy ints -> ints


def _report(error: CorruptEpisodeError, on_error: str) -> None:
    if on_error == "raise":
        raise error
    if on_error == "warn":
        warnings.warn(str(error), stacklevel=3)
