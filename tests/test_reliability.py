"""Reliability and security: engine-level validation, load, faults, integrity, no outbound network."""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, free_port, launch_app

from demo.engine.config import Interval, SamplerConfig
from demo.engine.pipeline import Request, RequestError

# ---- one place validates every request (the Gradio API can bypass the widgets) --------------------------


@pytest.mark.parametrize("kwargs,message", [
    ({"label": 10}, "class must be between 0 and 9"),
    ({"label": 2.5}, "class must be a whole number"),
    ({"label": "3"}, "class must be a number"),
    ({"label": True}, "class must be a number"),
    ({"method": "dpm"}, "unknown method"),
    ({"weight": -1e-9}, "w must be between 0 and 10"),
    ({"weight": math.nan}, "w must be finite"),
    ({"weight": math.inf}, "w must be finite"),
    ({"weight": None}, "w must be a number"),
    ({"num_samples": 0}, "number of samples must be between 1 and 64"),
    ({"num_samples": 65}, "number of samples must be between 1 and 64"),
    ({"seed": -1}, "seed must be between"),
    ({"seed": 2**31}, "seed must be between"),
    ({"sampler": SamplerConfig(num_steps=0)}, "steps must be between 1 and 1000"),
    ({"sampler": SamplerConfig(num_steps=1001)}, "steps must be between 1 and 1000"),
    ({"sampler": SamplerConfig(sampler="heun")}, "unknown sampler"),
    ({"interval": Interval(-1.0, 2.0)}, "low sigma must be between"),
    ({"interval": Interval(math.nan, 2.0)}, "low sigma must be finite"),
    ({"interval": Interval(2.0, 1.0)}, "high sigma must be a number >= the low sigma"),
    ({"interval": Interval(0.0, math.nan)}, "high sigma must be a number"),
])
def test_engine_rejects_every_bad_request(kwargs, message):
    with pytest.raises(RequestError, match=message):
        Request(**{"label": 3, **kwargs})


def test_engine_accepts_the_edges():
    Request(label=0, weight=0.0, num_samples=1, seed=0, sampler=SamplerConfig(num_steps=1))
    Request(label=9, weight=10.0, num_samples=64, seed=2**31 - 1, sampler=SamplerConfig(num_steps=1000),
            interval=Interval(0.0, math.inf))
    assert Request(label=np.int64(4), weight=np.float32(1.5)).label == 4


# ---- faults ---------------------------------------------------------------------------------------------

def start_with_weights(folder: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "GUIDANCE_LAB_WEIGHTS": str(folder), "GRADIO_ANALYTICS_ENABLED": "False"}
    return subprocess.run([sys.executable, "app.py", "--port", str(free_port())], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_corrupt_weights_stop_start_up_with_a_clear_message(tmp_path):
    shutil.copytree(ROOT / "weights", tmp_path / "weights")
    path = tmp_path / "weights" / "classifier.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    result = start_with_weights(tmp_path / "weights")
    assert result.returncode != 0
    assert "classifier.safetensors is corrupt" in result.stderr and "python -m demo.train" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_missing_weights_stop_start_up_with_a_clear_message(tmp_path):
    shutil.copytree(ROOT / "weights", tmp_path / "weights")
    (tmp_path / "weights" / "weak_denoiser.safetensors").unlink()
    result = start_with_weights(tmp_path / "weights")
    assert result.returncode != 0 and "weak_denoiser.safetensors is missing" in result.stderr
    assert "Traceback" not in result.stderr


# ---- the server under load, cancellation, memory, network --------------------------------------------------


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses LISTENing on `port`, read from /proc/net/tcp."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        host, port_hex = local.split(":")
        if int(port_hex, 16) == port and state == "0A":
            found.add(".".join(str(int(host[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


@pytest.mark.slow
def test_load_cancellation_memory_and_no_outbound_connections(tmp_path):
    from gradio_client import Client

    from demo.tools import classroom as loadtest
    log = tmp_path / "network.log"                      # the session's network guard (conftest) refuses and logs
    with launch_app({"NETWORK_LOG": str(log)}) as (url, process):
        assert listening_addresses(int(url.rsplit(":", 1)[1])) == {"127.0.0.1"}      # loopback by default
        small = loadtest.Student(label=6, seed=42, num_samples=2, num_steps=6)
        reference = loadtest.digits(Client(url, verbose=False, download_files=str(tmp_path / "ref")).predict(
            **small.kwargs(), api_name="/compare")[0])
        for round_ in range(3):                          # 16 at once, half of them asking the same thing
            students = [small if k % 2 else loadtest.Student(k % 10, 1000 * round_ + k, 2.0, 2, 6) for k in range(16)]
            served = loadtest.classroom(url, students)
            assert served["errors"] == []
            assert all(np.array_equal(p, reference) for p, s in zip(served["pictures"], students) if s == small)
        assert rss_mb(process.pid) < 1500

        # a request cancelled mid-sampling leaves the server healthy
        client = Client(url, verbose=False, download_files=str(tmp_path / "cancel"))
        job = client.submit(**loadtest.Student(3, 7, 2.0, 8, 400).kwargs(), api_name="/compare")
        time.sleep(1.5)
        job.cancel()
        after = client.predict(**small.kwargs(), api_name="/compare")
        assert np.array_equal(loadtest.digits(after[0]), reference)
        assert process.poll() is None
    outbound = log.read_text() if log.exists() else ""
    assert outbound == "", f"outbound connections: {outbound}"


@pytest.mark.slow
def test_two_replicas_answer_as_one_process(tmp_path):
    """Behind a load balancer, compare may reach one process and trajectory another: the second recomputes the
    runs from the request (same seed, same result) and returns the same bytes as the first would."""
    from gradio_client import Client

    from demo.tools import classroom as loadtest
    student = loadtest.Student(label=4, seed=11, num_samples=3, num_steps=8)
    with launch_app() as (url_a, _), launch_app() as (url_b, _):
        a = Client(url_a, verbose=False, download_files=str(tmp_path / "a"))
        b = Client(url_b, verbose=False, download_files=str(tmp_path / "b"))
        compared = a.predict(**student.kwargs(), api_name="/compare")
        here = a.predict(**student.kwargs(), api_name="/trajectory")
        there = b.predict(**student.kwargs(), api_name="/trajectory")
    assert loadtest.digits(compared[0]).shape[0] > 0
    assert here[0] == there[0]                                              # the filmstrip, frame for frame
    assert Path(here[1]).read_bytes() == Path(there[1]).read_bytes()        # the GIF


# ---- determinism across processes -------------------------------------------------------------------------

@pytest.mark.slow
def test_bitwise_determinism_across_processes():
    code = textwrap.dedent('''
        import hashlib
        from demo.engine.pipeline import Models, Request, generate_final
        from demo.engine.config import SamplerConfig
        m = Models.load()
        for method in ("unguided", "classifier", "cfg", "gfcg", "autoguidance"):
            x = generate_final(m, Request(label=2, method=method, weight=2.5, num_samples=3, seed=123,
                                          sampler=SamplerConfig(num_steps=6, sampler="ancestral")))
            print(method, hashlib.sha256(x.numpy().tobytes()).hexdigest())
    ''')
    runs = [subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                           timeout=300).stdout for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0].splitlines()) == 5
