"""Output files the app hands to Gradio: finished, content-addressed PNG/GIF files written atomically, in a
folder kept under a size limit.

Gradio's own cache rewrites an existing file in place when it is given a PIL image, so a client still
downloading that file could read it half-written under concurrent load; a file named by its content hash and
renamed into place is never rewritten.

The folder is bounded: when a write takes it past `limit_bytes`, the least recently used files (written or
handed out again: both touch the file) are deleted until it fits, but never one used in the last
`keep_seconds` (a client may still be fetching it).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Bound:
    """The output folder's size limit."""
    limit_bytes: int = 200 * 2**20      # total size of the folder's files
    keep_seconds: float = 60.0          # a file used this recently is never deleted


BOUND = Bound()
_lock = threading.Lock()
_estimate: dict[tuple[int, str], int] = {}     # (process, folder) -> bytes, recounted when it passes the limit


def set_bound(bound: Bound) -> None:
    global BOUND
    BOUND = bound


def save_file(data: bytes, folder: Path, name: str) -> str:
    """Write data to folder/<content hash>/name atomically (temp file + rename) once, and return the path."""
    path = Path(folder) / hashlib.sha256(data).hexdigest()[:32] / name
    if path.exists():
        try:
            os.utime(path)                                  # used again: the most recent for pruning
        except FileNotFoundError:                           # pruned between the check and now
            pass
        else:
            return str(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(dir=path.parent, suffix=".part")
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.replace(staging, path)
    _grew(Path(folder), len(data), keep=path)
    return str(path)


def _grew(folder: Path, size: int, keep: Path) -> None:
    key = (os.getpid(), str(folder))
    with _lock:
        if key not in _estimate:                            # first write in this process: count what is there
            _estimate[key] = folder_size(folder)
        else:
            _estimate[key] += size
        if _estimate[key] > BOUND.limit_bytes:
            _estimate[key] = prune(folder, BOUND, keep)


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
    """Delete least recently used files until the folder fits `bound` (sparing recent ones); its new size."""
    bound = bound or BOUND
    files = _files(folder)
    total = sum(size for _, size, _ in files)
    recent = time.time() - bound.keep_seconds
    for mtime, size, path in sorted(files):
        if total <= bound.limit_bytes or mtime > recent:
            break
        if path == keep:
            continue
        try:
            path.unlink()
            path.parent.rmdir()                             # its content-hash folder, once empty
        except OSError:
            pass
        total -= size
    return total
