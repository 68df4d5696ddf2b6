"""Start-up of `python app.py`: settings (demo/settings.py), fail-fast checks, weights and device, the guarded
server, one start-up block, and a clean exit. app.py keeps the layout and wiring and hands them over as AppParts.

Every start-up fault is one line on stderr and exit status 1; the address is checked before the weights load.
"""
from __future__ import annotations

import atexit
import errno
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from demo.engine.checkpoints import WEIGHTS_DIR, CheckpointError, verify_folder
from demo.serving import addresses
from demo.serving import outputs as files
from demo.serving import weights_source as hub
from demo.serving.compute import COMPUTE
from demo.serving.guard import (
    MAX_BODY,
    RequestGuard,
    one_line,
    quiet_user_errors,
    setup_log,
    unprinted_user_errors,
)
from demo.serving.idle import quiet_when_idle
from demo.serving.settings import MAX_QUEUE, Settings, StartupError, parse_settings

OUTPUT_PREFIX = "guidance_lab-"


@dataclass(frozen=True)
class AppParts:
    """What app.py hands over: serve(host, port, block, max_queue) -> Blocks; prepare(service) warms the cache;
    attach(service, output_folder, weights_folder) installs them for the handlers (weights_folder: where the
    verified weights came from, weights/ or an hf:// snapshot; the guides' measured ranges are read from it:
    findings.guide_range(key, weights_folder))."""
    serve: Callable
    prepare: Callable
    attach: Callable


# ---- the machine: address, output folder, device --------------------------------------------------------------

def check_address(host: str, port: int) -> None:
    """Bind a test socket (as the server will) so that a taken port fails now, not after the weights load."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise StartupError(f"cannot listen on {host!r}: not an address of this machine ({error.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise StartupError(f"port {port} is already in use on {host} (another Guidance Lab?); "
                                   f"choose another with --port or GUIDANCE_LAB_PORT") from None
            if error.errno == errno.EACCES:
                raise StartupError(f"no permission to listen on port {port} (ports below 1024 need privileges); "
                                   f"choose a port from 1024 with --port") from None
            raise StartupError(f"cannot listen on {host}:{port}: {error.strerror}") from None


def make_output_folder(environ) -> Path:
    """A private folder (mode 700) for this run's files, in $TMPDIR (strictly: no silent fallback)."""
    parent = environ.get("TMPDIR") or tempfile.gettempdir()
    try:
        return Path(tempfile.mkdtemp(prefix=OUTPUT_PREFIX, dir=parent))
    except FileNotFoundError:
        problem = "does not exist"
    except NotADirectoryError:
        problem = "is a file, not a folder"
    except OSError as error:
        problem = f"is not writable ({error.strerror})"
    raise StartupError(f"the temp folder {parent} {problem}; set TMPDIR to a writable folder")


def zerogpu(environ):
    """The `spaces` module on a ZeroGPU Space, else None. Every Gradio Space has `spaces` installed, so
    SPACES_ZERO_GPU (set by ZeroGPU, and what spaces.GPU itself checks) tells ZeroGPU from CPU hardware."""
    if not environ.get("SPACE_ID") or environ.get("SPACES_ZERO_GPU", "").lower() not in ("1", "t", "true"):
        return None
    try:
        import spaces
    except ImportError:
        return None
    return spaces


def use_zerogpu(spaces) -> None:
    """Each handler call becomes one spaces.GPU call holding all its torch work (demo/compute.py says why)."""
    COMPUTE.use_device_call(lambda fn: spaces.GPU(unprinted_user_errors(fn)))


DEVICE = re.compile(r"^(cpu|mps|cuda(?::(\d{1,3}))?)$")


def resolve_device(requested: str, on_zerogpu: bool, cuda_available: Callable[[], bool] = torch.cuda.is_available,
                   cuda_count: Callable[[], int] = torch.cuda.device_count,
                   mps_available: Callable[[], bool] = torch.backends.mps.is_available) -> str:
    """auto, cpu, cuda, cuda:N or mps, checked against this machine (ZeroGPU: cuda, attached per request)."""
    if requested == "auto":
        return "cuda" if on_zerogpu or cuda_available() else "cpu"
    match = DEVICE.match(requested)
    if match is None:
        raise StartupError(f"unknown device {one_line(requested, 40)!r}; use auto, cpu, cuda, cuda:N or mps")
    if requested.startswith("cuda"):
        if not (on_zerogpu or cuda_available()):
            raise StartupError(f"device {requested} asked for, but torch {torch.__version__} sees no CUDA GPU; "
                               f"use --device auto or cpu")
        index = int(match.group(2) or 0)
        if not on_zerogpu and index >= cuda_count():
            raise StartupError(f"device {requested} asked for, but torch sees {cuda_count()} CUDA GPU(s) "
                               f"(cuda:0 to cuda:{cuda_count() - 1})")
    if requested == "mps" and not mps_available():
        raise StartupError("device mps asked for, but torch sees no Apple GPU (MPS); use --device auto or cpu")
    return requested


def describe_device(device: str, on_zerogpu: bool) -> str:
    if on_zerogpu:
        return "cuda (ZeroGPU: a GPU is attached for each request)"
    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    threads = torch.get_num_threads()
    return f"{device} ({threads} thread{'' if threads == 1 else 's'})"


def startup_block(settings: Settings, device: str, checked: list[str], weights: Path, output: Path,
                  environ) -> str:
    wildcard = settings.host in ("0.0.0.0", "::", "")
    url = addresses.url
    local = url("127.0.0.1" if settings.host in ("0.0.0.0", "") else "::1" if settings.host == "::"
                else settings.host, settings.port)
    lines = ["Guidance Lab is running.", f"  Local:   {local}"]
    if settings.space_id:
        lines.append(f"  Space:   {addresses.space_url(settings.space_id, environ) or settings.space_id}")
    elif not addresses.is_loopback(settings.host):
        lan = addresses.lan_addresses() if wildcard else [settings.host]
        lines += [f"  LAN:     {url(address, settings.port)}   (students type this address)" for address in lan]
        if not lan:
            lines.append("  LAN:     no network interface with an IPv4 address was found")
    lines += [f"  Device:  {device} · weights verified ({len(checked)} files, sha256, {weights})",
              f"  Files:   {output} (at most {settings.max_output_mb} MB; deleted at exit)",
              f"  Budget:  a request may cost {settings.budget:g} default comparisons (--budget)",
              "  Stop with Ctrl+C."]
    return "\n".join(lines)


# ---- the server ---------------------------------------------------------------------------------------------------

def launch(blocks, host: str, port: int, *, block: bool = True, max_queue: int = MAX_QUEUE, **options):
    """Queue and launch `blocks` quietly behind RequestGuard, with user errors logged in one line."""
    from starlette.middleware import Middleware
    quiet_user_errors(blocks)
    options.setdefault("max_threads", 2 * max_queue + 8)       # handlers mostly wait: a thread per queued event
    blocks.queue(max_size=max_queue, default_concurrency_limit=1)
    quiet_when_idle(blocks)
    guard = Middleware(RequestGuard, max_body=MAX_BODY, blocks=blocks)
    blocks.launch(server_name=host, server_port=port, show_error=False, quiet=True, prevent_thread_lock=not block,
                  max_file_size=MAX_BODY, app_kwargs={"middleware": [guard]}, **options)
    return blocks


def use_private_gradio_cache(root: Path) -> None:
    """Point Gradio's file cache into our bounded, deleted-at-exit folder, whatever GRADIO_TEMP_DIR said before.
    This sets os.environ on purpose: Gradio has no other setting for it, and reads the variable when each
    component is built, when its server app is created and whenever it checks a file it serves (our files
    under root are then served without copies). Only its module-level copies (route_utils.DEFAULT_TEMP_DIR,
    read at import, used for video and MCP uploads, which this app has not) keep the earlier value."""
    os.environ["GRADIO_TEMP_DIR"] = str(root)


def start(parts: AppParts, argv: list[str] | None, environ) -> tuple:
    """Everything up to a listening server; (blocks, output folder). Reads `environ`, never writes it (the one
    process-wide change is Gradio's cache folder: use_private_gradio_cache)."""
    from demo.engine.pipeline import Models
    from demo.serving.service import Service
    settings = parse_settings(argv, environ)
    check_address(settings.host, settings.port)                 # before anything slow
    root = make_output_folder(environ)
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    use_private_gradio_cache(root)
    output = root / "files"
    output.mkdir()
    files.set_bound(files.Bound(limit_bytes=settings.max_output_mb * 2**20))
    spaces = zerogpu(environ)
    device = resolve_device(settings.device, spaces is not None)
    if spaces is not None:
        use_zerogpu(spaces)
    folder = hub.resolve(settings.weights, WEIGHTS_DIR, offline=settings.offline)
    checked = verify_folder(folder)
    # --max-queue bounds the comparisons sampling at once (the next visitor is told at once), not only the
    # events waiting in Gradio's queue (issue 24 §2)
    service = Service(COMPUTE.call(Models.load, folder, device=device), budget=settings.budget,
                      max_in_flight=settings.max_queue)
    parts.attach(service, output, folder, settings)
    if spaces is None:                                          # ZeroGPU has no GPU before the first request
        COMPUTE.call(parts.prepare, service)
    blocks = parts.serve(settings.host, settings.port, block=False, max_queue=settings.max_queue)
    print(startup_block(settings, describe_device(device, spaces is not None), checked, folder, output, environ),
          flush=True)
    return blocks, root


def wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass


def main(parts: AppParts, argv: list[str] | None = None) -> None:
    setup_log()
    try:
        blocks, root = start(parts, argv, os.environ)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except (StartupError, CheckpointError, hub.HubError) as error:
        raise SystemExit(f"Guidance Lab cannot start: {one_line(error, 10_000)}") from None
    except Exception as error:                                  # unexpected, but still one line
        raise SystemExit(f"Guidance Lab cannot start: {type(error).__name__}: {one_line(error, 10_000)}") from None
    wait_for_signal()
    blocks.close()
    shutil.rmtree(root, ignore_errors=True)
    print("Guidance Lab stopped.", flush=True)
