"""Settings and start-up (demo/serving/settings.py, server.py, addresses.py): precedence, one-line faults, the
device, the addresses printed, the private output folder, Gradio's cache folder, the weights folder handed to
the app, and an explicit HF_HUB_OFFLINE."""
from __future__ import annotations

import os
import re
import shutil
import socket
from pathlib import Path

import gradio.utils
import pytest
from conftest import free_port

from demo.engine import checkpoints
from demo.serving import addresses, server
from demo.serving import outputs as files
from demo.serving import weights_source as hub
from demo.serving.settings import DEFAULTED, Settings, StartupError, parse_settings, quiet_network, user_offline

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


@pytest.mark.parametrize("device", ["meta", "cpu:0", "xla", "cuda:", "cuda:-1", "ipu", "cuda:0:1"])
def test_only_cpu_cuda_and_mps_are_devices(device):
    """Issue 24 §4: --device meta passed the check, then failed with a traceback."""
    with pytest.raises(StartupError, match="use auto, cpu, cuda, cuda:N or mps") as error:
        server.resolve_device(device, False, lambda: True)
    assert "\n" not in str(error.value)


def test_cuda_index_and_mps_are_checked_against_the_machine():
    one_gpu = dict(cuda_available=lambda: True, cuda_count=lambda: 1)
    assert server.resolve_device("cuda:0", False, **one_gpu) == "cuda:0"
    with pytest.raises(StartupError, match=r"cuda:1 asked for, but torch sees 1 CUDA GPU"):
        server.resolve_device("cuda:1", False, **one_gpu)
    assert server.resolve_device("mps", False, mps_available=lambda: True) == "mps"
    with pytest.raises(StartupError, match="no Apple GPU"):
        server.resolve_device("mps", False, mps_available=lambda: False)


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


# ---- start(): reads its environ, writes only Gradio's cache folder, hands over the weights folder --------------

class FakeBlocks:
    closed = False

    def close(self):
        self.closed = True


def test_start_leaves_its_environ_alone_and_keeps_gradios_cache_private(tmp_path, weights_copy, monkeypatch,
                                                                          capsys):
    """Issue 20 §3.8: setdefault(GRADIO_TEMP_DIR) let Gradio's cache escape the bounded folder when the variable
    was set; start(environ) wrote to os.environ; the guide captions read weights/ whatever --weights said."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "elsewhere"))     # restored afterwards
    monkeypatch.setattr(files, "BOUND", files.BOUND)
    environ = {"TMPDIR": str(tmp_path), "GRADIO_TEMP_DIR": str(tmp_path / "elsewhere"), "PATH": "/usr/bin"}
    before = dict(environ)
    attached, served = [], []

    def serve(host, port, block, max_queue):
        served.append((host, port, block, max_queue))
        return FakeBlocks()
    parts = server.AppParts(serve=serve, prepare=lambda service: None,
                            attach=lambda service, output, weights, settings: attached.append((service, output, weights)))
    port = free_port()
    blocks, root = server.start(parts, ["--port", str(port), "--weights", str(weights_copy), "--max-queue", "5"],
                                environ)
    try:
        assert environ == before                                            # read, never written
        assert os.environ["GRADIO_TEMP_DIR"] == str(root) == gradio.utils.get_upload_folder()
        assert root.parent == tmp_path and root.name.startswith(server.OUTPUT_PREFIX)
        (service, output, weights), = attached
        assert weights == weights_copy and output == root / "files" and output.is_dir()
        assert served == [("127.0.0.1", port, False, 5)]
        assert "Guidance Lab is running" in capsys.readouterr().out
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---- an explicit HF_HUB_OFFLINE stays offline --------------------------------------------------------------------

def test_quiet_network_tells_the_users_offline_from_ours():
    ours = {}
    quiet_network(ours)
    assert ours["HF_HUB_OFFLINE"] == "1" and ours["GRADIO_ANALYTICS_ENABLED"] == "False"
    assert not user_offline(ours) and parse_settings([], ours).offline is False
    quiet_network(ours)                                                     # twice: the same
    assert not user_offline(ours) and "HF_HUB_OFFLINE" in ours[DEFAULTED].split(",")
    theirs = {"HF_HUB_OFFLINE": "1"}
    quiet_network(theirs)
    assert user_offline(theirs) and parse_settings([], theirs).offline is True
    assert "HF_HUB_OFFLINE" not in theirs[DEFAULTED].split(",")
    assert not user_offline({"HF_HUB_OFFLINE": "0"})


def test_hub_weights_stay_offline_when_the_user_said_so(monkeypatch):
    """Issue 24 §4: an explicit HF_HUB_OFFLINE=1 was overridden for --weights hf://…, so a name lookup was made."""
    asked = []

    def download(repo_id, revision, local_files_only):
        asked.append(local_files_only)
        raise FileNotFoundError("not in the cache")
    monkeypatch.setattr(hub, "download", download)
    with pytest.raises(hub.HubError, match="not in the Hugging Face cache, and HF_HUB_OFFLINE is set: staying "
                                           "offline") as error:
        hub.resolve("hf://owner/lab", checkpoints.WEIGHTS_DIR, offline=True)
    assert asked == [True] and "\n" not in str(error.value)                 # the cache only: nothing looked up
    with pytest.raises(hub.HubError, match="cannot download"):
        hub.resolve("hf://owner/lab", checkpoints.WEIGHTS_DIR)
    assert asked == [True, True, False]
