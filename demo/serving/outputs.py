"""Output files the app hands to Gradio: finished, content-addressed PNG/GIF files written atomically, in a
folder kept under a size limit.

Gradio's own cache rewrites an existing file in place when it is given a PIL image, so a client still
downloading that file could read it half-written under concurrent load; a file named by its content hash and
renamed into place is never rewritten.

The folder is bounded: when a write takes it past `limit_bytes`, the least recently used files (written or
handed out again: both touch the file) are deleted until it fits, sparing those used in the last
`keep_seconds` (a client may still be fetching them); if those alone pass twice the limit, the oldest of them go
too, until the folder is within twice the limit. The file being handed out is never deleted. Every touch,
rename and pruning decision happens under one lock, so a path just handed out is never pruned from a stale
listing.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

MAX_OUTPUT_MB = 200             # the folder's default size limit (operators: --max-output-mb)
STAGING = ".part"               # a file still being written


@dataclass(frozen=True)
class Bound:
    """The output folder's size limit."""
    limit_bytes: int = MAX_OUTPUT_MB * 2**20   # total size of the folder's files
    keep_seconds: float = 60.0                 # a file used this recently is spared while within 2x the limit


BOUND = Bound()
_lock = threading.Lock()                        # touches, renames and pruning of this process
_estimate: dict[tuple[int, str], int] = {}     # (process, folder) -> bytes, recounted when it passes the limit


def set_bound(bound: Bound) -> None:
    global BOUND
    BOUND = bound


def save_file(data: bytes, folder: Path, name: str) -> str:
    """Write data to folder/<content hash>/name atomically (temp file + rename) once, and return the path."""
    path = Path(folder) / hashlib.sha256(data).hexdigest()[:32] / name
    with _lock:
        if _touch(path):                                    # used again: the most recent for pruning
            return str(path)
        fd, staging = _staging(path.parent)
    with os.fdopen(fd, "wb") as file:                       # written outside the lock; a folder holding a
        file.write(data)                                    # staging file is never removed (not empty)
    with _lock:
        os.replace(staging, path)
        _grew(Path(folder), len(data), keep=path)
    return str(path)


def _touch(path: Path) -> bool:
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    return True


def _staging(folder: Path, tries: int = 5) -> tuple[int, str]:
    """mkdir + mkstemp; again if the folder was pruned in between (another process's rmdir)."""
    for _ in range(tries - 1):
        folder.mkdir(parents=True, exist_ok=True)
        try:
            return tempfile.mkstemp(dir=folder, suffix=STAGING)
        except FileNotFoundError:
            pass
    folder.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(dir=folder, suffix=STAGING)


def _grew(folder: Path, size: int, keep: Path) -> None:
    key = (os.getpid(), str(folder))
    if key not in _estimate:                                # first write in this process: count what is there
        _estimate[key] = folder_size(folder)
    else:
        _estimate[key] += size
    if _estimate[key] > BOUND.limit_bytes:
        _estimate[key] = _prune(folder, BOUND, keep)


def _files(folder: Path) -> list[tuple[float, int, Path]]:
    """(last use, size, path) of every file under folder (files deleted meanwhile are skipped)."""
    found = []
    for path in Path(folder).rglob("*"):
        try:
            if path.is_file():
                stat = path.stat()
                found.append((stat.st_mtime, stat.st_size, path))
        except FileNotFoundError:
            pass
    return found


def folder_size(folder: Path) -> int:
    return sum(size for _, size, _ in _files(folder))


def prune(folder: Path, bound: Bound | None = None, keep: Path | None = None) -> int:
    """Bring the folder within `bound` (module docstring); its new size."""
    with _lock:
        return _prune(folder, bound or BOUND, keep)


def _prune(folder: Path, bound: Bound, keep: Path | None) -> int:
    files = sorted(_files(folder))                          # least recently used first
    total = sum(size for _, size, _ in files)
    recent = time.time() - bound.keep_seconds
    for limit, spare_recent in ((bound.limit_bytes, True), (2 * bound.limit_bytes, False)):
        left = []
        for mtime, size, path in files:
            writing = path.name.endswith(STAGING) and mtime > recent
            if total <= limit or path == keep or writing or (spare_recent and mtime > recent):
                left.append((mtime, size, path))
                continue
            try:
                path.unlink()
                path.parent.rmdir()                         # its content-hash folder, once empty
            except OSError:
                pass
            total -= size
        files = left
    return total
