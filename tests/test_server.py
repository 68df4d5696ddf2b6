"""Hosting and server hardening (demo/server.py, demo/guard.py, demo/hub.py, demo/files.py): settings, start-up
faults, ZeroGPU, refused requests, user errors in one log line, bounded output, hub weights, publishing."""
from __future__ import annotations

import contextlib
import inspect
import logging
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

import gradio as gr
import pytest
from conftest import ROOT, free_port
from test_app import values
from test_reliability import listening_addresses

import app
from demo.engine import checkpoints
from demo.engine.checkpoints import CheckpointError
from demo.engine.config import GUIDES
from demo.engine.validation import RequestError
from demo.serving import addresses, guard, server
from demo.serving import outputs as files
from demo.serving import weights_source as hub
from demo.serving.settings import Settings, StartupError, parse_settings
from demo.tools import publish

# weight files, safetensors + JSON each: the denoiser, the two classifiers, the realism reference and the guides
WEIGHT_FILES = 2 * (4 + len(GUIDES))

# ---- settings ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv,environ,expected", [
    ([], {}, Settings()),
    ([], {"SPACE_ID": "owner/lab"}, Settings(host="0.0.0.0", space_id="owner/lab")),
    ([], {"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "7000"}, Settings(host="0.0.0.0", port=7000)),
    ([], {"GRADIO_SERVER_NAME": "0.0.0.0", "GUIDANCE_LAB_HOST": "10.0.0.2", "GRADIO_SERVER_PORT": "7000",
          "GUIDANCE_LAB_PORT": "7001"}, Settings(host="10.0.0.2", port=7001)),
    (["--host", "127.0.0.1", "--port", "7002"], {"GUIDANCE_LAB_HOST": "0.0.0.0", "GUIDANCE_LAB_PORT": "7001",
                                                 "GRADIO_SERVER_PORT": "7000", "SPACE_ID": "x"},
     Settings(host="127.0.0.1", port=7002, space_id="x")),
    (["--device", "CPU", "--max-queue", "5", "--max-output-mb", "10", "--weights", "hf://o/r@v1"], {},
     Settings(device="cpu", max_queue=5, max_output_mb=10, weights="hf://o/r@v1")),
    ([], {"GUIDANCE_LAB_DEVICE": "cuda", "GUIDANCE_LAB_MAX_QUEUE": "3", "GUIDANCE_LAB_WEIGHTS": "/w"},
     Settings(device="cuda", max_queue=3, weights="/w")),
])
def test_settings_precedence_flags_then_ours_then_gradios_then_defaults(argv, environ, expected):
    assert parse_settings(argv, environ) == expected


def test_default_queue_is_64():
    assert Settings().max_queue == 64 and parse_settings([], {}).max_queue == 64


@pytest.mark.parametrize("argv,environ,message", [
    ([], {"GUIDANCE_LAB_PORT": "abc"}, "GUIDANCE_LAB_PORT must be a whole number from 1 to 65535, got 'abc'"),
    (["--port", "99999"], {}, "--port must be a whole number from 1 to 65535, got 99999"),
    ([], {"GRADIO_SERVER_PORT": "0"}, "GRADIO_SERVER_PORT must be a whole number"),
    (["--max-queue", "0"], {}, "--max-queue must be a whole number from 1"),
    (["--host", "http://x"], {}, "--host must be an address"),
    (["--bogus"], {}, "unrecognized arguments: --bogus"),
])
def test_bad_settings_are_one_clear_line(argv, environ, message):
    with pytest.raises(StartupError, match=re.escape(message)) as error:
        parse_settings(argv, environ)
    assert "\n" not in str(error.value)


def test_device_auto_and_explicit():
    assert server.resolve_device("auto", False, lambda: False) == "cpu"
    assert server.resolve_device("auto", False, lambda: True) == "cuda"
    assert server.resolve_device("auto", True, lambda: False) == "cuda"          # ZeroGPU: cuda at start-up
    assert server.resolve_device("cpu", False, lambda: True) == "cpu"
    with pytest.raises(StartupError, match="sees no CUDA GPU; use --device auto or cpu"):
        server.resolve_device("cuda", False, lambda: False)
    with pytest.raises(StartupError, match="unknown device 'banana'"):
        server.resolve_device("banana", False, lambda: False)


def test_addresses_to_print(monkeypatch):
    assert addresses.space_url("Owner/My_Lab.v2", {}) == "https://owner-my-lab-v2.hf.space"
    assert addresses.space_url("owner/lab", {"SPACE_HOST": "owner-lab.hf.space"}) == "https://owner-lab.hf.space"
    found = addresses.lan_addresses()                   # ioctl on the interfaces: the network guard sees nothing
    assert all(re.fullmatch(r"\d+\.\d+\.\d+\.\d+", a) and not a.startswith("127.") for a in found)
    monkeypatch.setattr(addresses, "lan_addresses", lambda: ["192.168.1.20", "10.0.0.5"])
    block = lambda settings: server.startup_block(settings, "cpu (2 threads)", ["a", "b"], Path("weights"),  # noqa
                                                  Path("/tmp/out"), {})
    lan = block(Settings(host="0.0.0.0", port=8000))
    assert "Local:   http://127.0.0.1:8000" in lan and "http://192.168.1.20:8000" in lan and "10.0.0.5:8000" in lan
    assert "weights verified (2 files" in lan and "Device:  cpu" in lan and "share=True" not in lan
    local = block(Settings())
    assert "LAN" not in local and "Local:   http://127.0.0.1:7860" in local
    space = block(Settings(host="0.0.0.0", space_id="owner/lab"))
    assert "Space:   https://owner-lab.hf.space" in space and "LAN" not in space


def test_a_taken_port_is_found_before_anything_loads():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StartupError, match=f"port {port} is already in use"):
            server.check_address("127.0.0.1", port)
    server.check_address("127.0.0.1", port)              # free again


def unwritable(tmp_path: Path) -> Path:
    if os.geteuid() == 0:                                # root writes anywhere a mode allows: sysfs refuses
        return Path("/sys")
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o555)
    return folder


def test_output_folder_is_private_and_temp_faults_are_clear(tmp_path):
    folder = server.make_output_folder({"TMPDIR": str(tmp_path)})
    assert folder.parent == tmp_path and folder.name.startswith("guidance_lab-")
    assert folder.stat().st_mode & 0o777 == 0o700
    (tmp_path / "file").write_text("x")
    for parent, problem in [(tmp_path / "file", "is a file, not a folder"), (tmp_path / "nope", "does not exist"),
                            (unwritable(tmp_path), "is not writable")]:
        with pytest.raises(StartupError, match=problem):
            server.make_output_folder({"TMPDIR": str(parent)})


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


# ---- requests refused before Gradio sees them ----------------------------------------------------------------------

@pytest.mark.parametrize("path,refused", [
    ("/gradio_api/file=https://example.com/x.png", True),
    ("/gradio_api/file=http%3A%2F%2Fexample.com%2Fx.png", True),
    ("/gradio_api/file=https%253A%252F%252Fexample.com", True),            # encoded twice
    ("/gradio_api/file=//example.com/x.png", True),
    ("/gradio_api/file=ftp://example.com/x", True),
    ("/gradio_api/file/https://example.com/x.png", True),
    ("/file=https://example.com/x.png", True),
    ("/gradio_api/proxy=https://x.hf.space/file=a.png", True),
    ("/gradio_api/upload", True),
    ("/gradio_api/file=/tmp/guidance_lab-x/files/ab/grid.png", False),
    ("/gradio_api/upload_progress", False),
    ("/gradio_api/queue/join", False),
    ("/", False),
])
def test_refused_paths(path, refused):
    assert (guard.refusal(path) is not None) == refused


def test_guard_refuses_large_bodies_before_the_app_reads_them():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    async def echo(request):
        return JSONResponse({"size": len(await request.body())})
    client = TestClient(guard.RequestGuard(Starlette(routes=[Route("/echo", echo, methods=["POST"])]),
                                           max_body=1000))
    assert client.post("/echo", content=b"x" * 1000).json() == {"size": 1000}
    assert client.post("/echo", content=b"x" * 1001).status_code == 413                  # Content-Length
    assert client.post("/echo", content=(b"x" * 300 for _ in range(4))).status_code == 413  # streamed, counted
    assert client.post("/echo", content=(b"x" * 300 for _ in range(3))).json() == {"size": 900}
    assert client.get("/gradio_api/file=https://example.com/x.png").status_code == 403


def test_user_errors_are_one_log_line_and_other_errors_keep_their_traceback():
    import asyncio
    lines, raised = [], []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    with gr.Blocks() as blocks:
        box = gr.Number()
        box.change(lambda x: x, box, box, api_name="compare")
    block_fn = next(fn for fn in blocks.fns.values() if fn.api_name == "compare")

    async def process_api(block_fn, *args, **kwargs):           # Gradio's: preprocess, the handler, postprocess
        raise raised[-1]
    blocks.process_api = process_api
    guard.quiet_user_errors(blocks)
    guard.log.addHandler(handler)
    try:
        for error in (RequestError("class must be between 0 and 9, got " + "9" * 200),
                      gr.Error("Value: 10 is not in the list of choices\n[0, 1, 2]")):
            raised.append(error)
            with pytest.raises(gr.Error) as shown:
                asyncio.run(blocks.process_api(block_fn, []))
            assert shown.value.print_exception is False                  # Gradio prints no traceback
        assert lines[0].startswith("/compare: class must be between 0 and 9, got 999") and lines[0].endswith("…")
        assert len(lines[0]) == len("/compare: ") + 80
        assert lines[1] == "/compare: Value: 10 is not in the list of choices [0, 1, 2]" and len(lines) == 2
        raised.append(ZeroDivisionError("a bug"))
        with pytest.raises(ZeroDivisionError):                           # Gradio prints its traceback
            asyncio.run(blocks.process_api(block_fn, []))
        assert len(lines) == 2
    finally:
        guard.log.removeHandler(handler)


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

@pytest.fixture()
def weights_copy(tmp_path) -> Path:
    folder = tmp_path / "weights"
    shutil.copytree(ROOT / "weights", folder)
    return folder


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


@pytest.mark.slow
def test_serve_launches_quietly_with_the_queue_limit_and_the_guard():
    import urllib.error
    import urllib.request
    port = free_port()
    blocks = app.serve("127.0.0.1", port, block=False, max_queue=5)
    try:
        assert blocks._queue.max_size == 5
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/gradio_api/file=https://example.com/x.png")
        assert refused.value.code == 403
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/gradio_api/info").status == 200
    finally:
        blocks.close()


# ---- start-up faults: one line on stderr, non-zero exit (subprocesses) ------------------------------------------

def run_app(args: list[str], env: dict) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "app.py", *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=180, env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", **env})
    return result, time.perf_counter() - start


def corrupt_manifest(folder: Path) -> None:
    (folder / "MANIFEST.json").write_text('{"denoiser.json": ')


def truncate_weights(folder: Path) -> None:
    path = folder / "weak_denoiser.safetensors"
    path.write_bytes(path.read_bytes()[:4096])


@pytest.mark.slow
@pytest.mark.parametrize("fault,message", [
    ("port in use", "is already in use"),
    ("GUIDANCE_LAB_PORT=abc", "GUIDANCE_LAB_PORT must be a whole number from 1 to 65535, got 'abc'"),
    ("--port 99999", "--port must be a whole number from 1 to 65535, got 99999"),
    ("unwritable temp folder", "is not writable"),
    ("a file where the output folder should be", "is a file, not a folder"),
    ("corrupt MANIFEST.json", "MANIFEST.json is corrupt"),
    ("truncated weight file", "weak_denoiser.safetensors is corrupt"),
])
def test_start_up_faults_are_one_line_and_a_nonzero_exit(fault, message, tmp_path, weights_copy):
    port = free_port()
    args, env = ["--port", str(port)], {"GUIDANCE_LAB_WEIGHTS": str(weights_copy)}
    holder = None
    if fault == "port in use":                          # weights that would fail too: the port is checked first
        holder = socket.socket()
        holder.bind(("127.0.0.1", port))
        holder.listen()
        env["GUIDANCE_LAB_WEIGHTS"] = str(tmp_path / "missing")
    elif fault == "GUIDANCE_LAB_PORT=abc":
        args, env["GUIDANCE_LAB_PORT"] = [], "abc"
    elif fault == "--port 99999":
        args = ["--port", "99999"]
    elif fault == "unwritable temp folder":
        env["TMPDIR"] = str(unwritable(tmp_path))
    elif fault == "a file where the output folder should be":
        (tmp_path / "tmp").write_text("a file")
        env["TMPDIR"] = str(tmp_path / "tmp")
    elif fault == "corrupt MANIFEST.json":
        corrupt_manifest(weights_copy)
    else:
        truncate_weights(weights_copy)
    try:
        result, seconds = run_app(args, env)
    finally:
        if holder is not None:
            holder.close()
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert lines[0].startswith("Guidance Lab cannot start: ") and message in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    if fault == "port in use":
        print(f"port in use reported after {seconds:.1f} s (imports included)")


# ---- the server as a Space starts it, and as a teacher does ------------------------------------------------------

@contextlib.contextmanager
def launch_app(env: dict, args: list[str], port: int, timeout: float = 120):
    """`python app.py *args`; yields (url, process) once it has printed its start-up block (process.log_text():
    its output so far), and stops it afterwards."""
    log = tempfile.TemporaryFile("w+")                   # a file, not a pipe: a full pipe would block the app
    process = subprocess.Popen([sys.executable, "app.py", *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                               text=True, env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False",
                                               "PYTHONUNBUFFERED": "1", **env})

    def output() -> str:
        log.seek(0)
        return log.read()
    process.log_text = output
    try:
        deadline = time.monotonic() + timeout
        while "Guidance Lab is running" not in output():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"app did not start (exit status {process.poll()}): {output()}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def space_server(tmp_path_factory):
    """`python app.py` with no flags, in a Space's environment; yields (url, port, process, network log)."""
    log = tmp_path_factory.mktemp("network") / "refused.log"
    port = free_port()
    env = {"SPACE_ID": "x", "GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": str(port),
           "NETWORK_LOG": str(log)}
    with launch_app(env, args=[], port=port) as (url, process):
        yield url, port, process, log


@pytest.mark.slow
def test_a_space_environment_binds_every_interface_and_prints_one_block(space_server):
    url, port, process, _ = space_server
    assert listening_addresses(port) == {"0.0.0.0"}
    out = process.log_text()
    assert f"Local:   http://127.0.0.1:{port}" in out and "Space:   x" in out
    assert f"weights verified ({WEIGHT_FILES} files" in out and "Device:  cpu" in out and "Files:   " in out
    assert "share=True" not in out and "Running on local URL" not in out and "Traceback" not in out


def status_of(port: int, path: str, headers: dict | None = None, body_size: int = 0, chunked: bool = False) -> int:
    """Send a request with a body of `body_size` bytes in 64 kB pieces, stopping once the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        head = f"{'POST' if body_size else 'GET'} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        if body_size:
            head += "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {body_size}\r\n"
        sock.sendall((head + "\r\n").encode())
        sent, piece = 0, b"x" * 65536
        answered = lambda wait: bool(select.select([sock], [], [], wait)[0])  # noqa: E731
        try:
            if not chunked:
                answered(5)                             # a declared length is refused without the body
            while sent < body_size and not answered(0):
                data = piece[:body_size - sent]
                sock.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n" if chunked else data)
                sent += len(data)
            if chunked and sent >= body_size:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        return int(sock.recv(65536).split()[1])


@pytest.mark.slow
def test_remote_files_uploads_and_large_bodies_are_refused_and_comparisons_still_work(space_server, tmp_path):
    from gradio_client import Client
    url, port, process, log = space_server
    for path in ("/gradio_api/file=https://example.com/x.png", "/gradio_api/file=https%3A%2F%2Fexample.com%2Fx.png",
                 "/gradio_api/file=//example.com/x.png", "/gradio_api/proxy=https://x.hf.space/file=a.png"):
        assert status_of(port, path) == 403, path
    assert not log.exists() or log.read_text() == ""  # nothing was looked up or connected to
    five_mb = 5 * 2**20
    assert status_of(port, "/gradio_api/upload", {"Content-Type": "multipart/form-data; boundary=b"},
                     five_mb) in (403, 413)
    assert status_of(port, "/gradio_api/queue/join", {"Content-Type": "application/json"}, five_mb) == 413
    assert status_of(port, "/gradio_api/queue/join", {"Content-Type": "application/json"}, five_mb,
                     chunked=True) == 413
    client = Client(url, verbose=False, download_files=str(tmp_path))
    picture, summary, status, download = client.predict(*values(seed=8, num_steps=4, num_samples=2),
                                                        api_name="/compare")
    assert "data-sample" in picture and Path(download).suffix == ".png"
    assert process.poll() is None and "Traceback" not in process.log_text()


@pytest.mark.slow
def test_a_user_error_is_one_log_line_without_a_traceback(space_server):
    from gradio_client import Client
    url, _, process, _ = space_server
    before = process.log_text()
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="high sigma must be a number >= the low sigma"):    # our check
        client.predict(*values(sigma_lo=5.0, sigma_hi=1.0), api_name="/compare")
    with pytest.raises(Exception, match="not in the list of choices"):                     # Gradio's check
        client.predict(*values(label=10), api_name="/compare")
    deadline = time.monotonic() + 10
    while process.log_text()[len(before):].count("/compare:") < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    new = process.log_text()[len(before):]
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d /compare: "
    assert len([line for line in new.splitlines() if re.match(stamp + ".*high sigma must be", line)]) == 1
    assert len([line for line in new.splitlines() if re.match(stamp + "Value: 10 .*not in the list", line)]) == 1
    assert "Traceback" not in new and len(new.strip().splitlines()) == 2, new


@pytest.mark.slow
def test_flags_win_over_the_environment_and_the_output_folder_goes_at_exit():
    port, theirs, ours = free_port(), free_port(), free_port()
    env = {"GUIDANCE_LAB_HOST": "0.0.0.0", "GUIDANCE_LAB_PORT": str(ours), "GRADIO_SERVER_NAME": "0.0.0.0",
           "GRADIO_SERVER_PORT": str(theirs)}
    with launch_app(env, args=["--host", "127.0.0.1", "--port", str(port)], port=port) as (_, process):
        assert listening_addresses(port) == {"127.0.0.1"}
        assert not listening_addresses(ours) and not listening_addresses(theirs)
        output = Path(re.search(r"Files:\s+(\S+)", process.log_text()).group(1))
        assert output.is_dir() and output.parent.name.startswith("guidance_lab-")
    assert process.returncode == 0 and not output.parent.exists()
