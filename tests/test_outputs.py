"""The bounded output folder under concurrent use (issue 20 §3.7, issue 24 §5)."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from demo.serving import outputs as files

MB = 2**20


def test_a_path_handed_out_during_a_prune_is_not_deleted_by_it(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "BOUND", files.Bound(limit_bytes=250_000, keep_seconds=60))
    old = files.save_file(b"o" * 100_000, tmp_path, "old.png")
    files.save_file(b"p" * 100_000, tmp_path, "other.png")
    os.utime(old, (time.time() - 600,) * 2)                       # unused for 10 minutes: the first to go
    listing, visitors, handed = files._files, [], []

    def listing_then_a_visitor(folder):                          # the prune has its listing; now a visitor
        found = listing(folder)                                  # asks for the old file again
        if not visitors and any(path == Path(old) for _, _, path in found):
            visitors.append(threading.Thread(target=lambda: handed.append(
                files.save_file(b"o" * 100_000, tmp_path, "old.png"))))
            visitors[0].start()
            visitors[0].join(0.5)                                # (after the fix it waits for the prune's lock)
        return found
    monkeypatch.setattr(files, "_files", listing_then_a_visitor)
    files.save_file(b"n" * 100_000, tmp_path, "new.png")         # 300 kB > 250 kB: prune
    visitors[0].join()
    assert handed == [old] and Path(old).exists()


def test_a_folder_pruned_between_mkdir_and_mkstemp_is_made_again(tmp_path, monkeypatch):
    made = []
    original = files.tempfile.mkstemp

    def rmdir_first(dir, suffix):                               # another process's prune gets in between
        if not made:
            made.append(dir)
            os.rmdir(dir)
        return original(dir=dir, suffix=suffix)
    monkeypatch.setattr(files.tempfile, "mkstemp", rmdir_first)
    path = files.save_file(b"data", tmp_path, "a.png")
    assert made and Path(path).read_bytes() == b"data"


def test_the_folder_stays_within_twice_its_limit_under_steady_use(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "BOUND", files.Bound(limit_bytes=5 * MB, keep_seconds=60))
    largest = 0
    for k in range(40):                                          # every file used just now: all protected
        path = files.save_file(k.to_bytes(4, "big") * 125_000, tmp_path, f"comparison{k}.png")   # 0.5 MB
        assert Path(path).exists()                               # the file handed out is never the one pruned
        largest = max(largest, files.folder_size(tmp_path))
    assert 5 * MB < largest <= 2 * 5 * MB                         # protection holds up to 2x, never beyond
    assert not list(tmp_path.rglob("*.part"))
