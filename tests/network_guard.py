"""The tests' network guard: every connection to, datagram to, or name lookup of anything but this machine's
loopback is REFUSED (an OSError, as an unreachable network gives) and written to $NETWORK_LOG.

tests/conftest.py calls install_for_session(): the guard is installed in the test process and, as
sitecustomize.py on PYTHONPATH, in every Python subprocess the tests start (the app under test included).
Binding (0.0.0.0 too) stays allowed.
"""
from __future__ import annotations

import errno
import ipaddress
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
_INET = (socket.AF_INET, socket.AF_INET6)


class NetworkRefused(ConnectionRefusedError):
    """Raised by the guard: the tests talk to loopback only."""


def is_local(host) -> bool:
    """Loopback, unspecified (0.0.0.0 means this machine) or a loopback name."""
    if host is None or host in ("", b""):
        return True
    host = host.decode() if isinstance(host, bytes) else str(host)
    host = host.strip("[]").split("%", 1)[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host.lower().rstrip(".") in LOOPBACK_NAMES
    return address.is_loopback or address.is_unspecified


def is_literal(host) -> bool:
    try:
        ipaddress.ip_address((host.decode() if isinstance(host, bytes) else str(host)).strip("[]").split("%")[0])
        return True
    except ValueError:
        return False


def _refuse(what: str, target) -> NetworkRefused:
    log = os.environ.get("NETWORK_LOG")
    if log:
        with open(log, "a") as file:
            file.write(f"{os.getpid()} {what} {target!r}\n")
    return NetworkRefused(errno.ECONNREFUSED, f"network guard: {what} {target!r} refused (tests are loopback-only)")


def install() -> None:
    if getattr(socket, "_network_guard", False):
        return
    connect, connect_ex, sendto = socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto
    getaddrinfo, gethostbyname, gethostbyname_ex = socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex

    def guarded_connect(self, address):
        if self.family in _INET and not is_local(address[0]):
            raise _refuse("connect", address)
        return connect(self, address)

    def guarded_connect_ex(self, address):
        if self.family in _INET and not is_local(address[0]):
            raise _refuse("connect", address)
        return connect_ex(self, address)

    def guarded_sendto(self, data, *args):
        address = args[-1]
        if self.family in _INET and not is_local(address[0]):
            raise _refuse("sendto", address)
        return sendto(self, data, *args)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if not (is_local(host) or is_literal(host)):
            raise _refuse("getaddrinfo", host)
        return getaddrinfo(host, *args, **kwargs)

    def guarded_gethostbyname(host):
        if not (is_local(host) or is_literal(host)):
            raise _refuse("gethostbyname", host)
        return gethostbyname(host)

    def guarded_gethostbyname_ex(host):
        if not (is_local(host) or is_literal(host)):
            raise _refuse("gethostbyname_ex", host)
        return gethostbyname_ex(host)

    socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto = \
        guarded_connect, guarded_connect_ex, guarded_sendto
    socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex = \
        guarded_getaddrinfo, guarded_gethostbyname, guarded_gethostbyname_ex
    socket._network_guard = True


def install_for_session() -> Path:
    """Guard this process and, through PYTHONPATH, its Python subprocesses; the folder of sitecustomize.py and
    of the log of refused attempts. Also turns Hugging Face telemetry off (gradio_client sends it)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")             # read when huggingface_hub is first imported
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    folder = Path(tempfile.mkdtemp(prefix="guidance_lab_guard-"))
    shutil.copy(__file__, folder / "sitecustomize.py")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p)
    os.environ["NETWORK_LOG"] = str(folder / "refused.log")
    install()
    return folder


def finish_session(session, folder: Path) -> None:
    """Fail the test run if anything was refused (an attempt may have been caught and ignored), and clean up."""
    log = folder / "refused.log"
    refused = log.read_text() if log.exists() else ""
    shutil.rmtree(folder, ignore_errors=True)
    if refused:
        print(f"\nnetwork guard: outbound attempts were refused during the tests:\n{refused}", file=sys.stderr)
        session.exitstatus = 1


if __name__ == "sitecustomize":                          # copied there by tests/conftest.py
    install()
