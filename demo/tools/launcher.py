"""The one way the tools and the tests start the app and call it: `python app.py` on a free loopback port
(launch_app), and /compare's named parameters (defaults, compare_kwargs, call).

Used by the bench's classroom, the screenshots, the load test and tests/conftest.py. Traffic goes to 127.0.0.1.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, Sequence

from demo.engine.config import ROOT

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")     # gradio_client would report usage to the hub
os.environ.setdefault("HF_HUB_OFFLINE", "1")
READY = "Guidance Lab is running"                     # the start-up block's first line: the server listens
LESSONS_READY = "lessons ready"                       # the log line once every lesson's view is computed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def launch_app(env: dict | None = None, args: Sequence[str] | None = None, port: int | None = None,
               timeout: float = 180, timing: Path | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """`python app.py --port <port>` (a free port unless given; `args` replaces the flags, and must then name
    the port, or set it in `env`, if the app is to listen on `port`); yields (url, process) once the start-up
    block is printed, and stops the app afterwards. process.output(): everything it printed so far.
    `timing`: the app runs with the bench's clock, which it writes to this file (demo/tools/timed_app.py)."""
    port = port or free_port()
    argv = ["--port", str(port)] if args is None else list(args)
    log = tempfile.TemporaryFile("w+")                   # a file, not a pipe: a full pipe would block the app
    command = ["app.py"] if timing is None else ["-m", "demo.tools.timed_app"]
    clock = {} if timing is None else {"GUIDANCE_LAB_TIMING": str(timing)}
    process = subprocess.Popen([sys.executable, *command, *argv], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                               text=True, env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False",
                                               "PYTHONUNBUFFERED": "1", **clock, **(env or {})})

    def output() -> str:
        log.seek(0)
        return log.read()
    process.output = output
    try:
        deadline = time.monotonic() + timeout
        while READY not in output():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the app did not start (exit status {process.poll()}): {output()[-2000:]}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def wait_for_lessons(process: subprocess.Popen, timeout: float = 1200) -> str:
    """Wait until the app has computed every lesson's view (its log says so; a few seconds after start-up at the
    defaults): measure a server that is idle or serving visitors, not one still warming up. Returns that line."""
    deadline = time.monotonic() + timeout
    while LESSONS_READY not in process.output():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the app did not finish its lessons' warm-up: {process.output()[-2000:]}")
        time.sleep(0.5)
    return next(line for line in process.output().splitlines() if LESSONS_READY in line)


# ---- calling it: gradio_client, /compare by name -------------------------------------------------------------

def client(url: str, download_files: str | bool = False):
    """A gradio_client Client for the app at `url`, patient with a busy server (60 s per HTTP request instead of
    httpx's 5: a loaded machine's first requests can take longer)."""
    from gradio_client import Client
    return Client(url, verbose=False, download_files=download_files, httpx_kwargs={"timeout": 60})


def defaults(**changes) -> dict:
    """/compare's keyword arguments at the app's defaults (demo/ui/form.py, read when called), with `changes`
    by field name; the UI-only `follow` is not sent."""
    from demo.ui.form import COMPARE
    return COMPARE.api_defaults(**changes)


def compare_kwargs(label: int = 3, seed: int = 0, weight: float = 2.0, num_samples: int = 8, num_steps: int = 32,
                   sampler: str = "ddim", follow: int = 0) -> dict:
    """/compare's (and /trajectory's) keyword arguments for every method at the same w, from the endpoint's
    declaration (demo/ui/form.py): the UI-only `follow` is not sent."""
    from demo.ui.form import COMPARE, GUIDED, weight_name
    return COMPARE.api_defaults(label=label, mode="same", weight=weight, num_steps=num_steps, sampler=sampler,
                                num_samples=num_samples, seed=seed, **{weight_name(m): weight for m in GUIDED})


def call(client, kwargs: dict, api_name: str = "/compare", submit: bool = False):
    """client.predict(**kwargs, api_name=...), or client.submit: the tools' one way to call the app."""
    send = client.submit if submit else client.predict
    return send(**kwargs, api_name=api_name)


def rest_call(url: str, kwargs: dict, api_name: str = "compare", timeout: float = 600) -> list:
    """One call of an endpoint over Gradio's REST protocol, as light on this machine's CPU as a browser tab is
    on the server's: POST /gradio_api/call/<api_name> with the positional values (`kwargs` by name, in the
    endpoint's order), then read its event stream to the end; returns the outputs (files as Gradio's dicts).
    A class's stand-in students use it: thirty gradio_client instances sharing the server's two cores took
    more of them than the students' own machines ever would. A refused call raises RuntimeError(its message)."""
    import json
    import urllib.request
    request = urllib.request.Request(f"{url.rstrip('/')}/gradio_api/call/{api_name}",
                                     data=json.dumps({"data": list(kwargs.values())}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        event = json.loads(reply.read())["event_id"]
    with urllib.request.urlopen(f"{url.rstrip('/')}/gradio_api/call/{api_name}/{event}", timeout=timeout) as stream:
        kind = None
        for raw in stream:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[len("event: "):]
            elif line.startswith("data: ") and kind in ("complete", "error"):
                data = json.loads(line[len("data: "):])
                if kind == "error":      # Gradio sends {"error": message, ...}, or null for a fault
                    raise RuntimeError(data.get("error") if isinstance(data, dict) else
                                       data if isinstance(data, str) else json.dumps(data))
                return data
    raise RuntimeError(f"/{api_name}: the event stream ended without a result")
