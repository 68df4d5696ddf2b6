"""Hosting (demo/serving/server.py, outputs.py, weights_source.py, demo/tools/publish.py): ZeroGPU with a
stand-in `spaces`, the bounded output folder, the weights' manifest, hub weights and publishing."""
from __future__ import annotations

import inspect
import os
import shutil
import sys
import threading
import types
from pathlib import Path

import pytest

from demo.engine import checkpoints
from demo.engine.checkpoints import CheckpointError
from demo.engine.config import GUIDES
from demo.serving import server
from demo.serving import weights_source as hub
from demo.tools import publish

# weight files, safetensors + JSON each: the denoiser, the two classifiers, the realism reference and the guides
WEIGHT_FILES = 2 * (4 + len(GUIDES))

# ---- ZeroGPU -------------------------------------------------------------------------------------------------------

def stub_spaces():
    """A stand-in for Hugging Face's `spaces`: GPU(fn) records what it wraps and marks the time inside a call."""
    spaces = types.ModuleType("spaces")
    spaces.wrapped, spaces.calls, spaces.inside = [], [], 0

    def GPU(fn):                                         # noqa: N802 (spaces' name)
        spaces.wrapped.append(fn)
        if inspect.isgeneratorfunction(fn):
            def decorated(*args, **kwargs):
                spaces.calls.append((fn.__name__, threading.current_thread()))
                spaces.inside += 1
                try:
                    yield from fn(*args, **kwargs)
                finally:
                    spaces.inside -= 1
        else:
            def decorated(*args, **kwargs):
                spaces.calls.append((fn.__name__, threading.current_thread()))
                spaces.inside += 1
                try:
                    return fn(*args, **kwargs)
                finally:
                    spaces.inside -= 1
        return decorated
    spaces.GPU = GPU
    return spaces


def test_zerogpu_is_detected_only_on_a_zerogpu_space(monkeypatch):
    monkeypatch.setitem(sys.modules, "spaces", stub_spaces())
    assert server.zerogpu({"SPACE_ID": "o/n", "SPACES_ZERO_GPU": "true"}) is sys.modules["spaces"]
    assert server.zerogpu({"SPACE_ID": "o/n"}) is None                       # a CPU Space has `spaces` too
    assert server.zerogpu({"SPACES_ZERO_GPU": "true"}) is None               # not a Space
    monkeypatch.setitem(sys.modules, "spaces", None)                         # not installed
    assert server.zerogpu({"SPACE_ID": "o/n", "SPACES_ZERO_GPU": "true"}) is None


def test_corrupt_manifest_and_truncated_weights_name_the_file(weights_copy):
    weight = weights_copy / "denoiser.safetensors"
    weight.write_bytes(weight.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"denoiser\.safetensors is corrupt"):
        checkpoints.verify_folder(weights_copy)
    (weights_copy / "MANIFEST.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match=r"MANIFEST\.json is corrupt .*python -m demo\.train"):
        checkpoints.verify_folder(weights_copy)


def snapshot(tmp_path: Path, weights: Path) -> Path:
    """A folder laid out as huggingface_hub's cache: snapshots/<commit>/<file> -> ../../blobs/<hash>."""
    repo = tmp_path / "hub" / "models--owner--lab"
    folder = repo / "snapshots" / ("c0ffee" * 6 + "c0ff")
    (repo / "blobs").mkdir(parents=True)
    folder.mkdir(parents=True)
    for file in weights.iterdir():
        blob = repo / "blobs" / checkpoints.sha256(file)
        shutil.copy(file, blob)
        (folder / file.name).symlink_to(os.path.relpath(blob, folder))
    return folder


def test_hub_weights_are_downloaded_then_verified(tmp_path, weights_copy, monkeypatch):
    folder = snapshot(tmp_path, weights_copy)
    asked = []

    def download(repo_id, revision, local_files_only):
        asked.append((repo_id, revision, local_files_only))
        if local_files_only:
            raise FileNotFoundError("not in the cache yet")
        return str(folder)
    monkeypatch.setattr(hub, "download", download)
    assert hub.resolve("hf://owner/lab@v1", checkpoints.WEIGHTS_DIR) == folder
    assert asked == [("owner/lab", "v1", True), ("owner/lab", "v1", False)]    # the cache first
    assert hub.resolve("", checkpoints.WEIGHTS_DIR) == checkpoints.WEIGHTS_DIR  # the local folder by default

    blob = (folder / "classifier.safetensors").resolve()
    blob.write_bytes(blob.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(CheckpointError, match=r"classifier\.safetensors is corrupt") as error:
        hub.resolve("hf://owner/lab", checkpoints.WEIGHTS_DIR)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("spec,message", [
    ("hf://nobody", "is not hf://owner/repo"), ("hf://a/b@", "is not hf://owner/repo"),
    ("hf://a/b/c", "is not hf://owner/repo"), ("/no/such/folder", "does not exist"),
])
def test_bad_weight_addresses(spec, message):
    with pytest.raises(hub.HubError, match=message):
        hub.resolve(spec, checkpoints.WEIGHTS_DIR)


def test_hub_download_failure_is_one_line(monkeypatch):
    def download(repo_id, revision, local_files_only):
        raise OSError("no route to host\nsecond line")
    monkeypatch.setattr(hub, "download", download)
    with pytest.raises(hub.HubError, match=r"cannot download hf://owner/lab: OSError: no route to host second"):
        hub.resolve("hf://owner/lab", checkpoints.WEIGHTS_DIR)


def test_publish_is_a_dry_run_unless_told(capsys, monkeypatch, weights_copy):
    uploads = []
    monkeypatch.setattr(publish, "upload", lambda repo, folder, files, private: uploads.append((repo, files)) or "url")
    assert publish.main(["--repo", "owner/lab", "--folder", str(weights_copy)]) == 0
    out = capsys.readouterr().out
    assert "model repo owner/lab" in out and "Dry run: nothing was uploaded" in out and not uploads
    for name in ("MANIFEST.json", "README.md", "denoiser.safetensors", "real_reference.json"):
        assert name in out
    assert checkpoints.sha256(weights_copy / "denoiser.safetensors") in out
    assert publish.main(["--repo", "owner/lab", "--folder", str(weights_copy), "--yes"]) == 0
    assert uploads and uploads[0][0] == "owner/lab" and len(uploads[0][1]) == WEIGHT_FILES + 2  # + manifest, card
    (weights_copy / "denoiser.json").write_text("{}")
    assert publish.main(["--repo", "owner/lab", "--folder", str(weights_copy), "--yes"]) == 1   # never corrupt
    assert publish.main(["--repo", "not a repo"]) == 1 and len(uploads) == 1

