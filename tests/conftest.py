"""Shared fixtures: the analytic 2-D Gaussian mixture (exact oracle) and the shipped models (loaded once)."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

import network_guard
from demo.toy import GaussianMixture, MixtureClassifier, three_class_mixture

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
GUARD = network_guard.install_for_session()     # no test reaches past loopback, nor do the processes they start


def pytest_sessionfinish(session, exitstatus):
    network_guard.finish_session(session, GUARD)


@pytest.fixture(scope="session")
def mixture() -> GaussianMixture:
    return three_class_mixture()


@pytest.fixture(scope="session")
def mixture_classifier(mixture) -> MixtureClassifier:
    return MixtureClassifier(mixture)


@pytest.fixture()
def away_from_zero():
    """A toy guidance method, written the way a new method is added: one small class (removed afterwards)."""
    import torch

    from demo.guidance import GUIDANCE, Call, Guidance

    class AwayFromZero(Guidance, key="away_from_zero"):
        """Delta = D(x|c) - D(x|0): push away from class 0."""
        nfe_per_step = 2

        def requests(self, net, x, sigma, label, belief):
            return [Call(net, x, label), Call(net, x, torch.zeros_like(label))]

        def combine(self, outputs, x, sigma, label, belief):
            return outputs[0], outputs[0] - outputs[1]

    yield AwayFromZero
    GUIDANCE.pop("away_from_zero")


@pytest.fixture(scope="session")
def models():
    from demo.pipeline import Models
    return Models.load()


ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def launch_app(env: dict | None = None, timeout: float = 120):
    """`python app.py` on a free port; yields (url, process) once the port accepts connections."""
    port = free_port()
    full_env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1", **(env or {})}
    log = tempfile.TemporaryFile("w+")                   # a file, not a pipe: a full pipe would block the app
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=full_env,
                               stdout=log, stderr=subprocess.STDOUT, text=True)

    def output() -> str:
        log.seek(0)
        return log.read()

    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"app exited with {process.returncode}: {output()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"app did not start within {timeout} s") from None
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def server():
    with launch_app() as (url, _):
        yield url
