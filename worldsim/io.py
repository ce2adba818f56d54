"""Atomic file writes: every file worldsim writes goes to a temp name in the same folder, then is
renamed over the target, so an interrupted run (Ctrl-C, kill -9, a full disk) never leaves a
half-written store index, checkpoint, video or report behind: the old file or the new one, whole.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable


def _temp_beside(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600 files; give them the usual permissions
    return fd, tmp


def atomic_write_bytes(path: str | Path, write_fn: Callable[[BinaryIO], Any]) -> Path:
    """Write ``path`` through ``write_fn(file)`` into a temp file in the same folder, then rename."""
    path = Path(path)
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_bytes(path, lambda f: f.write(json.dumps(obj, indent=2, sort_keys=True).encode()))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, lambda f: f.write(text.encode()))


STALE_TEMP_SECONDS = 600  # a temp file not written to for this long has no live writer


def _clear_leftovers(path: Path) -> None:
    """Remove the temp files of ``path`` that a killed writer left (kill -9 skips the cleanup of
    :func:`atomic_write_with`; a killed checkpoint write leaves tens of MB): those not written to for
    :data:`STALE_TEMP_SECONDS`, as a live writer keeps touching its own."""
    now = time.time()
    for name in glob.glob(os.path.join(glob.escape(str(path.parent)), f".{glob.escape(path.stem)}.*.tmp{path.suffix}")):
        try:
            if now - os.stat(name).st_mtime > STALE_TEMP_SECONDS:
                os.unlink(name)
        except FileNotFoundError:  # another cleanup got there first
            pass


def atomic_write_with(path: str | Path, writer: Callable[[str], Any]) -> Path:
    """For writers that want a file *name* (``torch.save``, ``imageio.mimsave``): ``writer(tmp)``
    writes a temp file beside ``path`` (same suffix, so format detection works), renamed on success.
    Stale temps of ``path`` from killed writes are removed first (:func:`_clear_leftovers`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        writer(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
