"""The addresses the start-up block prints, found without the network: interface addresses come from the
kernel (an ioctl per interface; no DNS lookup, nothing sent), a Space's URL from its environment."""
from __future__ import annotations

import ipaddress
import socket
import struct

SIOCGIFADDR = 0x8915                                   # Linux ioctl: an interface's IPv4 address


def lan_addresses() -> list[str]:
    """IPv4 addresses of this machine's non-loopback interfaces, asked of the kernel (no DNS, nothing sent)."""
    try:
        import fcntl
        names = [name for _, name in socket.if_nameindex()]
    except (ImportError, OSError):
        return []
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for name in names:
            try:
                reply = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            except OSError:                            # no IPv4 address on this interface
                continue
            address = socket.inet_ntoa(reply[20:24])
            if not ipaddress.ip_address(address).is_loopback and address not in found:
                found.append(address)
    return found


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def space_url(space_id: str, environ) -> str | None:
    if environ.get("SPACE_HOST"):
        return f"https://{environ['SPACE_HOST']}"
    owner, _, name = space_id.partition("/")
    if not name:
        return None
    sub = f"{owner}-{name}".lower().replace("_", "-").replace(".", "-")
    return f"https://{sub}.hf.space"
