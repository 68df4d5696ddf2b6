"""Hosting (demo/serving/server.py, outputs.py, weights_source.py, demo/tools/publish.py): ZeroGPU with a
stand-in `spaces`, the bounded output folder, the weights' manifest, hub weights and publishing."""
from __future__ import annotations

import inspect
import os
import shutil
import sys
import threading
import time
import types
from pathlib import Path

import gradio as gr
import pytest
from test_app import values

import app
from demo.engine import checkpoints
from demo.engine.checkpoints import CheckpointError
from demo.engine.config import GUIDES
from demo.serving import outputs as files
from demo.serving import server
from demo.serving import service as svc
from demo.serving import weights_source as hub
from demo.serving.compute import COMPUTE
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


def test_on_zerogpu_sampling_runs_inside_the_decorated_call(models, monkeypatch):
    spaces = stub_spaces()
    monkeypatch.setitem(sys.modules, "spaces", spaces)
    monkeypatch.setattr(COMPUTE, "device_call", None)                      # restored afterwards
    monkeypatch.setattr(COMPUTE, "device_handlers", {})
    monkeypatch.setattr(app, "SERVICE", svc.Service(models))
    server.use_zerogpu(server.zerogpu({"SPACE_ID": "o/n", "SPACES_ZERO_GPU": "true"}))
    assert {fn.__name__ for fn in spaces.wrapped} == {"on_compare", "on_ladder", "on_trajectory", "on_sweep"}
    assert len(spaces.wrapped) == 4                                      # each decorated once, before launch
    seen = []                                                            # every denoiser call: where, inside?
    hook = models.net.register_forward_pre_hook(lambda *_: seen.append((threading.current_thread(), spaces.inside)))
    try:
        for _ in app.on_compare(*values(seed=123, num_steps=4, num_samples=2)):
            pass
    finally:
        hook.remove()
    assert ("on_compare", threading.current_thread()) in spaces.calls
    assert seen and all(thread is threading.current_thread() and inside == 1 for thread, inside in seen)
    assert COMPUTE.call(threading.current_thread) is threading.current_thread()    # no compute thread
    with pytest.raises(gr.Error, match="class must be between 0 and 9") as error:   # re-raised untraced
        for _ in app.on_compare(*values(label=10)):
            pass
    assert error.value.print_exception is False


# ---- the output folder stays bounded ------------------------------------------------------------------------------

def test_output_folder_is_pruned_least_recently_used_first(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "BOUND", files.Bound(limit_bytes=350_000, keep_seconds=60))
    old = [files.save_file(bytes([k]) * 100_000, tmp_path, f"old{k}.png") for k in range(3)]
    for k, path in enumerate(old):                                            # used 10, 9, 8 minutes ago
        os.utime(path, (time.time() - 600 + 60 * k,) * 2)
    files.save_file(bytes([0]) * 100_000, tmp_path, "old0.png")               # handed out again: recent now
    files.save_file(b"n" * 100_000, tmp_path, "new.png")                      # 400 kB > 350 kB: prune
    assert files.folder_size(tmp_path) <= 350_000
    assert Path(old[0]).exists() and not Path(old[1]).exists() and Path(old[2]).exists()
    for k in range(5):                                                        # all recent: nothing is deleted
        files.save_file(bytes([100 + k]) * 100_000, tmp_path, f"recent{k}.png")
    assert len(list(tmp_path.rglob("recent*.png"))) == 5
    monkeypatch.setattr(files, "BOUND", files.Bound(limit_bytes=350_000, keep_seconds=0))
    files.save_file(b"last" * 25_000, tmp_path, "last.png")
    assert files.folder_size(tmp_path) <= 350_000 and (tmp_path / Path(files.save_file(
        b"last" * 25_000, tmp_path, "last.png")).relative_to(tmp_path)).exists()
    assert not [p for p in tmp_path.iterdir() if p.is_dir() and not any(p.iterdir())]   # no empty folders left


# ---- weights: manifest, hub, publishing ----------------------------------------------------------------------------

def test_the_model_card_beside_the_weights_is_not_part_of_the_manifest():
    assert (checkpoints.WEIGHTS_DIR / "README.md").is_file()
    assert "README.md" not in checkpoints.read_manifest(checkpoints.WEIGHTS_DIR)
    assert len(checkpoints.verify_folder(checkpoints.WEIGHTS_DIR)) == WEIGHT_FILES


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

