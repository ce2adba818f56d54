"""Import Minecraft recordings in the OpenAI VPT contractor format into an episode store.

    worldsim import-minerl src=path/to/vpt data_dir=data/minerl

A VPT recording (openai/Video-Pre-Training, README "Data format") is a pair of files with one
name: ``<name>.mp4``, the game at 20 fps, 640×360, and ``<name>.jsonl``, one JSON object per video
frame (``mouse``, ``keyboard``, ``isGuiOpen``, ``hotbar``, ``tick``, ``yaw``, ``pitch``,
``xpos``/``ypos``/``zpos`` …). Each pair becomes one episode:

* **Frames**: every video frame, decoded with imageio's ffmpeg plugin and resized to
  ``frame_size`` with the same area interpolation as the live adapter.
* **Actions**: each line goes through :func:`~worldsim.envs.minerl_actions.vpt_records_to_minerl`
  (VPT's key table and camera scale) and then
  :func:`~worldsim.envs.minerl_actions.minerl_to_discrete`, the mapping of the live
  :class:`~worldsim.envs.minerl.MineRLEnv`, so indices mean the same thing in both.
* **Alignment**: VPT pairs line ``i`` with frame ``i``: the input held while frame ``i`` was on
  screen, whose effect shows from frame ``i + 1`` on. In worldsim's convention (``frames[i]`` seen
  before ``actions[i]``) that makes ``actions[i]`` = line ``i`` for ``i < n - 1``; the last line has
  no following frame and is dropped. ``n`` frames give ``n - 1`` steps.
* Rewards are 0 (recordings have none), ``terminated`` is always False and the last step is
  ``truncated`` (a VPT segment is a cut of a longer play session). Null actions and GUI frames
  are kept as ``noop`` so that the frame rate stays fixed (VPT's behavioural cloning drops them).
* **Timestamps**: ``tick / 20`` seconds (the line index when ``tick`` is missing).
* **Ground truth**, when every line has it: ``state/agent_pos`` ``(3,)`` float32 ``xpos ypos zpos``
  and ``state/agent_yaw_pitch`` ``(2,)`` float32 degrees.
* **Meta**: ``source`` (the video's file name, the identity used for resuming), ``source_path``
  (relative to ``src``), counts of GUI-open and null-action frames.

The store's environment record is :func:`~worldsim.envs.minerl.minerl_env_metadata` (env
``"minerl"``), so the store is compatible with episodes recorded live by ``worldsim collect
env=minerl`` and with models trained on them. Import is resumable: recordings whose file name is
already in an episode's ``source`` are skipped, and each episode is written atomically.
"""

from __future__ import annotations

import json
import time
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from worldsim.data.episode import Episode, EpisodeBuilder
from worldsim.data.store import EpisodeStore
from worldsim.envs.common import parse_frame_size, resize_frame
from worldsim.envs.minerl import minerl_env_metadata
from worldsim.envs.minerl_actions import (
    DEFAULT_CAMERA_STEP,
    VPT_FPS,
    is_null_action,
    minerl_to_discrete,
    vpt_records_to_minerl,
)

_POS_KEYS = ("xpos", "ypos", "zpos")
_DIR_KEYS = ("yaw", "pitch")


class VPTImportError(ValueError):
    """A recording that cannot be imported (missing pair, unreadable video, mismatched lengths)."""


@dataclass
class ImportResult:
    data_dir: Path
    recordings_found: int
    imported: int = 0
    skipped_existing: int = 0
    steps_imported: int = 0
    seconds: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)  # source name -> reason (on_error="skip")


# ---------------------------------------------------------------------- finding recordings
def find_recordings(src: str | Path) -> list[tuple[Path, Path]]:
    """``(video, jsonl)`` pairs under ``src`` (a folder, searched recursively, or one ``.mp4``).

    Raises :class:`VPTImportError` if there is no video, if a video has no ``.jsonl`` beside it,
    or if two videos share a file name (the name identifies a recording in the store).
    """
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"{src} does not exist. Point src= at a folder of VPT recordings (.mp4 + .jsonl).")
    videos = [src] if src.is_file() else sorted(p for p in src.rglob("*.mp4") if not p.name.startswith("."))
    if not videos:
        raise VPTImportError(
            f"No .mp4 videos under {src}. A VPT recording is a pair <name>.mp4 + <name>.jsonl "
            "(see docs/minecraft.md for where to download them)."
        )
    missing = [v for v in videos if not v.with_suffix(".jsonl").exists()]
    if missing:
        names = ", ".join(str(v) for v in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise VPTImportError(
            f"{len(missing)} video(s) have no action file beside them: {names}. Each <name>.mp4 needs "
            "<name>.jsonl in the same folder; download the missing .jsonl files or move those videos away."
        )
    seen: dict[str, Path] = {}
    for v in videos:
        if v.name in seen:
            raise VPTImportError(f"Two recordings share the name {v.name}: {seen[v.name]} and {v}. Rename one.")
        seen[v.name] = v
    if src.is_dir():
        orphans = sorted(p for p in src.rglob("*.jsonl") if not p.with_suffix(".mp4").exists())
        if orphans:
            warnings.warn(f"{len(orphans)} .jsonl file(s) have no video and are ignored, e.g. {orphans[0]}.",
                          stacklevel=2)
    return [(v, v.with_suffix(".jsonl")) for v in videos]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise VPTImportError(f"{path}, line {lineno} is not valid JSON ({e}); the file is damaged.") from e
            if not isinstance(record, dict):
                raise VPTImportError(f"{path}, line {lineno} is not a JSON object; is this a VPT action file?")
            records.append(record)
    return records


def decode_video(path: Path, size: tuple[int, int]) -> np.ndarray:
    """All frames of ``path`` as ``(n, h, w, 3)`` uint8 RGB, resized to ``size``."""
    import imageio

    hint = "The file is damaged or not a video: re-download it, or move the pair away."
    try:
        reader = imageio.get_reader(str(path), "ffmpeg")
    except Exception as e:  # imageio/ffmpeg raise several types for unreadable files
        raise VPTImportError(f"Cannot open video {path} ({type(e).__name__}: {e}). {hint}") from e
    frames = []
    try:
        for frame in reader:
            frames.append(resize_frame(np.asarray(frame, dtype=np.uint8)[..., :3], size))
    except Exception as e:
        raise VPTImportError(f"Cannot decode video {path} after {len(frames)} frames "
                             f"({type(e).__name__}: {e}). {hint}") from e
    finally:
        reader.close()
    if not frames:
        raise VPTImportError(f"Video {path} holds no frames. {hint}")
    return np.stack(frames)


def imported_sources(store: EpisodeStore) -> set[str]:
    """The ``source`` names recorded in the meta of the store's episodes (reads only the meta)."""
    sources = set()
    for path in store.episode_paths():
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
            continue  # an unreadable episode does not count as imported
        if meta.get("source"):
            sources.add(str(meta["source"]))
    return sources


# ---------------------------------------------------------------------- one recording
def _state(records: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    out = {}
    if all(all(k in r for k in _POS_KEYS) for r in records):
        out["agent_pos"] = np.array([[float(r[k]) for k in _POS_KEYS] for r in records], dtype=np.float32)
    if all(all(k in r for k in _DIR_KEYS) for r in records):
        out["agent_yaw_pitch"] = np.array([[float(r[k]) for k in _DIR_KEYS] for r in records], dtype=np.float32)
    return out


def recording_to_episode(video: Path, jsonl: Path, frame_size: int | tuple[int, int] = 64,
                         camera_step: float = DEFAULT_CAMERA_STEP, source_path: str | None = None) -> Episode:
    """One VPT recording as an :class:`Episode` (alignment and fields in the module docstring)."""
    records = read_jsonl(jsonl)
    frames = decode_video(video, parse_frame_size(frame_size))
    if len(records) != len(frames):
        raise VPTImportError(
            f"{jsonl} has {len(records)} action lines but {video} has {len(frames)} frames; a VPT recording "
            "has exactly one line per frame. The pair is probably cut short (an interrupted download): "
            "download both files again, or move them away to import the rest."
        )
    if len(frames) < 2:
        raise VPTImportError(f"{video} has a single frame; an episode needs at least two.")
    minerl_actions = vpt_records_to_minerl(records)
    actions = [minerl_to_discrete(a, camera_step) for a in minerl_actions]
    ticks = [r.get("tick") for r in records]
    if all(isinstance(t, (int, float)) for t in ticks):
        timestamps = np.asarray(ticks, dtype=np.float64) / VPT_FPS
    else:
        timestamps = np.arange(len(records), dtype=np.float64) / VPT_FPS
    state = _state(records)
    meta = {
        "importer": "vpt",
        "source": video.name,
        "source_path": source_path or video.name,
        "frames": len(frames),
        "gui_open_frames": sum(bool(r.get("isGuiOpen", False)) for r in records),
        "null_action_frames": sum(is_null_action(a) for a in minerl_actions),
        "camera_step": float(camera_step),
    }
    if isinstance(records[0].get("milli"), (int, float)):
        meta["start_unix_ms"] = int(records[0]["milli"])
    n = len(frames)
    builder = EpisodeBuilder(frames[0], {k: v[0] for k, v in state.items()}, float(timestamps[0]), meta=meta)
    for i in range(n - 1):
        builder.add(actions[i], frames[i + 1], 0.0, False, i == n - 2,
                    {k: v[i + 1] for k, v in state.items()}, float(timestamps[i + 1]))
    return builder.build()


# ---------------------------------------------------------------------- the importer
def import_vpt_recordings(
    src: str | Path,
    data_dir: str | Path,
    frame_size: int | tuple[int, int] = 64,
    camera_step: float = DEFAULT_CAMERA_STEP,
    task: str = "MineRLTreechop-v0",
    progress: bool = True,
    skip_existing: bool = True,
    on_error: str = "raise",
) -> ImportResult:
    """Import every VPT recording under ``src`` into the episode store at ``data_dir``.

    ``task`` only labels the store (as the live adapter's ``task`` would), so that it matches
    ``worldsim collect env=minerl``. ``on_error="skip"`` records a bad recording in
    ``result.failed`` and goes on; ``"raise"`` (default) stops at it, keeping what was imported.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}.")
    t0 = time.perf_counter()
    src = Path(src)
    pairs = find_recordings(src)
    store = EpisodeStore.create(data_dir, minerl_env_metadata(task, frame_size, camera_step))
    done = imported_sources(store) if skip_existing else set()
    result = ImportResult(Path(data_dir), recordings_found=len(pairs))
    bar = tqdm(pairs, unit="rec", desc="import-minerl", disable=not progress, dynamic_ncols=True)
    try:
        for video, jsonl in bar:
            if video.name in done:
                result.skipped_existing += 1
                continue
            rel = video.relative_to(src).as_posix() if src.is_dir() else video.name
            try:
                episode = recording_to_episode(video, jsonl, frame_size, camera_step, source_path=rel)
            except VPTImportError as e:
                if on_error == "raise":
                    raise
                result.failed[video.name] = str(e)
                continue
            store.write(episode)
            done.add(video.name)
            result.imported += 1
            result.steps_imported += len(episode)
            bar.set_postfix(steps=result.steps_imported)
    finally:
        bar.close()
        result.seconds = time.perf_counter() - t0
    return result
