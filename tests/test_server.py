"""The app as a server (`python app.py` in subprocesses, and app.serve): start-up faults in one line, a Space's
environment, refused requests and bad calls against the real app, user errors in one log line, flags over the
environment, and an idle server that sleeps."""
from __future__ import annotations

import contextlib
import json
import os
import re
import select
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, free_port, launch_app
from test_hosting import WEIGHT_FILES
from test_reliability import listening_addresses
from test_settings import unwritable

import app
from demo.tools import launcher
from demo.ui.form import COMPARE


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
    ("--device meta", "unknown device 'meta'; use auto, cpu, cuda, cuda:N or mps"),        # issue 24 §4
    ("HF_HUB_OFFLINE=1 and hf:// weights", "HF_HUB_OFFLINE is set: staying offline"),       # issue 24 §4
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
    elif fault == "--device meta":
        args += ["--device", "meta"]
    elif fault == "HF_HUB_OFFLINE=1 and hf:// weights":
        env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), GUIDANCE_LAB_WEIGHTS="hf://owner/lab")
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

@pytest.fixture(scope="module")
def space_server(tmp_path_factory):
    """`python app.py` with no flags, in a Space's environment; yields (url, port, process, network log)."""
    log = tmp_path_factory.mktemp("network") / "refused.log"
    port = free_port()
    env = {"SPACE_ID": "x", "GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": str(port),
           "NETWORK_LOG": str(log)}
    with launch_app(env, args=[], port=port) as (url, process):
        yield url, port, process, log


def wakeups_per_second(pid: int, seconds: float = 3.0) -> float:
    """Voluntary context switches of all the process's threads per second: how often it wakes up."""
    def total() -> int:
        count = 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):
                status = (task / "status").read_text()
                count += int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)", status, re.M).group(1))
        return count
    before = total()
    time.sleep(seconds)
    return (total() - before) / seconds


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts wake-ups in /proc (Linux)")
def test_an_idle_server_sleeps(space_server):
    """Issue 24 §5: idle, the server used 5-7% of a CPU: Gradio's queue woke every 1 ms (about 860 times a second
    here). Idle now: about 30 (the queue every 50 ms, uvicorn's own tick every 100 ms)."""
    _, _, process, _ = space_server
    launcher.wait_for_lessons(process)         # the warm-up at start is work, not idleness
    time.sleep(1.0)
    assert wakeups_per_second(process.pid) < 150


@pytest.mark.slow
def test_a_space_environment_binds_every_interface_and_prints_one_block(space_server):
    url, port, process, _ = space_server
    assert listening_addresses(port) == {"0.0.0.0"}
    out = process.output()
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
    client = launcher.client(url, str(tmp_path))
    picture, summary, status, download = launcher.call(client, launcher.compare_kwargs(seed=8, num_steps=4,
                                                                                       num_samples=2))
    assert "data-sample" in picture and Path(download).suffix == ".png"
    assert process.poll() is None and "Traceback" not in process.output()


@pytest.mark.slow
def test_a_user_error_is_one_log_line_without_a_traceback(space_server):
    url, _, process, _ = space_server
    before = process.output()
    client = launcher.client(url)
    with pytest.raises(Exception, match="high sigma must be a number >= the low sigma"):    # our check
        launcher.call(client, {**launcher.compare_kwargs(), "sigma_lo": 5.0, "sigma_hi": 1.0})
    with pytest.raises(Exception, match=r"Digit \(label\) must be between 0 and 9, got 10"):   # the field's check
        launcher.call(client, launcher.compare_kwargs(label=10))
    deadline = time.monotonic() + 10
    while process.output()[len(before):].count("/compare:") < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    new = process.output()[len(before):]
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d /compare: "
    assert len([line for line in new.splitlines() if re.match(stamp + ".*high sigma must be", line)]) == 1
    assert len([line for line in new.splitlines() if re.match(stamp + r"Digit \(label\) must be between", line)]) == 1
    assert "Traceback" not in new and len(new.strip().splitlines()) == 2, new


@pytest.mark.slow
def test_flags_win_over_the_environment_and_the_output_folder_goes_at_exit():
    port, theirs, ours = free_port(), free_port(), free_port()
    env = {"GUIDANCE_LAB_HOST": "0.0.0.0", "GUIDANCE_LAB_PORT": str(ours), "GRADIO_SERVER_NAME": "0.0.0.0",
           "GRADIO_SERVER_PORT": str(theirs)}
    with launch_app(env, args=["--host", "127.0.0.1", "--port", str(port)], port=port) as (_, process):
        assert listening_addresses(port) == {"127.0.0.1"}
        assert not listening_addresses(ours) and not listening_addresses(theirs)
        output = Path(re.search(r"Files:\s+(\S+)", process.output()).group(1))
        assert output.is_dir() and output.parent.name.startswith("guidance_lab-")
    assert process.returncode == 0 and not output.parent.exists()


@pytest.mark.slow
def test_bad_calls_are_one_line_and_leave_no_traceback(space_server):
    """Issue 24 §1 against the app itself: unknown endpoints and function indexes, too few values."""
    url, _, process, _ = space_server
    before = process.output()
    for path, body, status in [("call/nope", {"data": [1]}, 404),
                               ("queue/join", {"data": [], "fn_index": 9999, "session_hash": "abc"}, 404),
                               ("queue/join", {"data": [], "fn_index": -1, "session_hash": "abc"}, 404),
                               ("queue/join", {"data": [], "fn_index": 0, "session_hash": "s" * 10_000}, 422)]:
        request = urllib.request.Request(f"{url}/gradio_api/{path}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == status and b"\n" not in refused.value.read()
    request = urllib.request.Request(f"{url}/gradio_api/call/compare", data=b'{"data": [1, 2, 3]}',
                                     headers={"Content-Type": "application/json"})
    event = json.loads(urllib.request.urlopen(request, timeout=30).read())["event_id"]
    reply = urllib.request.urlopen(f"{url}/gradio_api/call/compare/{event}", timeout=60).read().decode()
    fields = len(COMPARE.names) - len(COMPARE.hidden)           # the declared API fields (the UI's follow is not)
    assert f"expected {fields} values, got 3: " in reply
    deadline = time.monotonic() + 10
    while "got 3" not in process.output()[len(before):] and time.monotonic() < deadline:
        time.sleep(0.2)
    new = process.output()[len(before):]
    assert len(new.strip().splitlines()) == 1 and f"/compare: expected {fields} values" in new
    assert "Traceback" not in new
