"""The app's settings, highest first: command-line flags; GUIDANCE_LAB_HOST / _PORT / _DEVICE / _WEIGHTS /
_MAX_QUEUE / _MAX_OUTPUT_MB / _BUDGET; Gradio's GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (what Hugging Face Spaces set);
defaults: 127.0.0.1:7860, or 0.0.0.0 on a Space (SPACE_ID set), whose proxy cannot reach 127.0.0.1.
A bad value is a StartupError of one line naming the flag or variable.

quiet_network() keeps Gradio and huggingface_hub off the network by default, and remembers which of those
variables the user set: an explicit HF_HUB_OFFLINE=1 keeps even --weights hf://… offline (Settings.offline).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

from demo.engine.config import BUDGET
from demo.serving.outputs import MAX_OUTPUT_MB

MAX_QUEUE = 64
QUIET_NETWORK = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
DEFAULTED = "GUIDANCE_LAB_DEFAULTED"                   # which QUIET_NETWORK variables we set, not the user
TRUE = ("1", "on", "yes", "true")                      # what huggingface_hub reads as true


def quiet_network(environ) -> None:
    """Set each QUIET_NETWORK variable the user did not set, and name it in GUIDANCE_LAB_DEFAULTED (so that the
    user's own HF_HUB_OFFLINE=1 is told from ours). app.py calls this first: Gradio and huggingface_hub read
    these variables when they are imported. Processes started from this one inherit both."""
    ours = {name for name in environ.get(DEFAULTED, "").split(",") if name}
    for name, value in QUIET_NETWORK.items():
        if not environ.get(name, "").strip():
            environ[name] = value
            ours.add(name)
    environ[DEFAULTED] = ",".join(sorted(ours))


def user_offline(environ) -> bool:
    """HF_HUB_OFFLINE is true and the user set it (not quiet_network)."""
    return environ.get("HF_HUB_OFFLINE", "").strip().lower() in TRUE and \
        "HF_HUB_OFFLINE" not in environ.get(DEFAULTED, "").split(",")


def one_line(text, limit: int = 80) -> str:
    """text on one line, cut to `limit` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


class StartupError(RuntimeError):
    """A setting or the machine stops the app from starting; the message is one line and says what to do."""


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 7860
    device: str = "auto"                # auto: cuda when available (or ZeroGPU), else cpu; cpu, cuda[:N], mps
    weights: str = ""                   # '' = weights/; a folder; or hf://owner/repo[@revision]
    max_queue: int = MAX_QUEUE          # requests waiting at most; more are refused with "queue full"
    max_output_mb: int = MAX_OUTPUT_MB  # the output folder's size limit (least recently used files go)
    budget: float = BUDGET              # what one request may cost, in default comparisons
    space_id: str | None = None         # Hugging Face Spaces sets SPACE_ID=owner/name
    offline: bool = False               # the user set HF_HUB_OFFLINE: hf:// weights come from the cache only
    previews: bool = True               # a comparison forms in front of the visitor (--no-previews: a status line)


FALSE = ("0", "false", "no", "off")


class _Parser(argparse.ArgumentParser):
    def error(self, message):                          # one line, not usage + message
        raise StartupError(message)


def parse_settings(argv: list[str] | None, environ) -> Settings:
    parser = _Parser(prog="python app.py", description="Guidance Lab: diffusion guidance methods side by side.")
    parser.add_argument("--host", help="address to listen on; 0.0.0.0 serves a classroom LAN")
    parser.add_argument("--port", help="port (default 7860)")
    parser.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    parser.add_argument("--weights", help="weights folder or hf://owner/repo[@revision] (default: weights/)")
    parser.add_argument("--max-queue", help=f"requests that may wait (default {MAX_QUEUE})")
    parser.add_argument("--max-output-mb", help=f"size limit of the output folder in MB (default {MAX_OUTPUT_MB})")
    parser.add_argument("--budget", help=f"what one request may cost, in default comparisons (default {BUDGET:g}; "
                        f"raise it on a single-user laptop)")
    parser.add_argument("--no-previews", action="store_true", default=None,
                        help="no forming pictures while a comparison samples (GUIDANCE_LAB_PREVIEWS=0)")
    args = parser.parse_args(argv)

    def pick(flag: str, value, *names: str) -> tuple[str | None, str]:
        if value is not None:
            return value, flag
        for name in names:
            if environ.get(name, "").strip():
                return environ[name].strip(), name
        return None, flag

    space_id = environ.get("SPACE_ID", "").strip() or None
    host, source = pick("--host", args.host, "GUIDANCE_LAB_HOST", "GRADIO_SERVER_NAME")
    if host is not None and (not host.strip() or any(c in host for c in " /\\@")):
        raise StartupError(f"{source} must be an address such as 127.0.0.1 or 0.0.0.0, got {host!r}")
    return Settings(
        host=host or ("0.0.0.0" if space_id else Settings.host),
        port=_whole(*pick("--port", args.port, "GUIDANCE_LAB_PORT", "GRADIO_SERVER_PORT"), Settings.port, 1, 65535),
        device=(pick("--device", args.device, "GUIDANCE_LAB_DEVICE")[0] or "auto").lower(),
        weights=pick("--weights", args.weights, "GUIDANCE_LAB_WEIGHTS")[0] or "",
        max_queue=_whole(*pick("--max-queue", args.max_queue, "GUIDANCE_LAB_MAX_QUEUE"), MAX_QUEUE, 1, 10_000),
        max_output_mb=_whole(*pick("--max-output-mb", args.max_output_mb, "GUIDANCE_LAB_MAX_OUTPUT_MB"),
                             Settings.max_output_mb, 1, 1_000_000),
        budget=_number(*pick("--budget", args.budget, "GUIDANCE_LAB_BUDGET"), Settings.budget, 0.1, 1e6),
        space_id=space_id, offline=user_offline(environ),
        previews=not args.no_previews and environ.get("GUIDANCE_LAB_PREVIEWS", "1").strip().lower() not in FALSE)


def _whole(text: str | None, source: str, default: int, lo: int, hi: int) -> int:
    if text is None:
        return default
    try:
        value = int(text.strip())
    except ValueError:
        raise StartupError(f"{source} must be a whole number from {lo} to {hi}, got {one_line(text, 40)!r}") from None
    if not lo <= value <= hi:
        raise StartupError(f"{source} must be a whole number from {lo} to {hi}, got {value}")
    return value


def _number(text: str | None, source: str, default: float, lo: float, hi: float) -> float:
    if text is None:
        return default
    try:
        value = float(text.strip())
    except ValueError:
        raise StartupError(f"{source} must be a number from {lo:g} to {hi:g}, got {one_line(text, 40)!r}") from None
    if not lo <= value <= hi:                      # also refuses nan
        raise StartupError(f"{source} must be a number from {lo:g} to {hi:g}, got {value:g}")
    return value
