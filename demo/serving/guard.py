"""What the server refuses before Gradio sees a request, and how user errors are logged.

RequestGuard (ASGI middleware):
* a file or proxy route whose path names a URL (any scheme, also percent-encoded, or //host): 403. Gradio
  would fetch such a URL itself (a DNS lookup and a connection on the visitor's behalf); this app never hands
  out remote files, so nothing is looked up or fetched.
* uploads (the app has no upload widget): 403.
* a request body over `max_body` bytes: 413, from Content-Length when given and by counting the bytes
  received otherwise, before anything parses it.

quiet_user_errors: a user's mistake (RequestError, gr.Error) is logged as one line (time, endpoint, message cut
to 80 characters), never as a traceback; any other exception keeps Gradio's traceback.
"""
from __future__ import annotations

import functools
import inspect
import json
import logging
import re
import sys
from urllib.parse import unquote

import gradio as gr

from demo.engine.validation import RequestError
from demo.serving.settings import one_line

MAX_BODY = 1 << 20                                     # bytes; the app's own requests are a few hundred
ROUTE = re.compile(r"^/+(?:gradio_api/+)?(file=|file/|proxy=|upload)(.*)$", re.S)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
NO_BODY = {"GET", "HEAD", "OPTIONS"}
log = logging.getLogger("guidance_lab")
log.setLevel(logging.INFO)


def refusal(path: str) -> str | None:
    """Why a request path is refused (None: it is not)."""
    decoded = path
    for _ in range(8):                                 # %2568 -> %68 -> h: decode until it no longer changes
        once = unquote(decoded)
        if once == decoded:
            break
        decoded = once
    for candidate in (path, decoded):
        match = ROUTE.match(candidate)
        if match is None:
            continue
        route, rest = match.groups()
        if route == "upload":
            return "uploads are not accepted" if rest in ("", "/") else None
        if route == "proxy=":
            return "this server proxies nothing"
        if SCHEME.match(rest) or rest.startswith(("//", "\\\\", "/\\", "\\/")):
            return "remote files are not fetched"
    return None


class RequestGuard:
    """ASGI middleware: see the module docstring."""

    def __init__(self, app, max_body: int = MAX_BODY):
        self.app, self.max_body = app, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        raw = scope.get("raw_path")
        reason = refusal(scope.get("path", "")) or (refusal(raw.decode("latin-1")) if raw else None)
        if reason:
            return await respond(send, 403, reason)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            if not length.strip().isdigit():
                return await respond(send, 400, "bad Content-Length")
            if int(length) > self.max_body:
                return await respond(send, 413, self.too_large())
        if length is None and b"transfer-encoding" not in headers and scope.get("method") in NO_BODY:
            return await self.app(scope, receive, send)
        messages, size = [], 0                         # the whole body, counted, before the app reads it
        while True:
            message = await receive()
            if message["type"] != "http.request":      # the client went away
                return None
            size += len(message.get("body", b""))
            if size > self.max_body:
                return await respond(send, 413, self.too_large())
            messages.append(message)
            if not message.get("more_body"):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()
        return await self.app(scope, replay, send)

    def too_large(self) -> str:
        return f"request body larger than {self.max_body // 1024} KB"


async def respond(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


# ---- user errors: one log line -----------------------------------------------------------------------------

def setup_log() -> None:
    """The app's log lines on stderr: `2026-12-01 14:03:07 /compare: class must be between 0 and 9`."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        log.addHandler(handler)
        log.propagate = False


def _unprinted(error: Exception) -> gr.Error:
    """The gr.Error that shows a user error to the user without a server traceback."""
    if isinstance(error, gr.Error):
        error.print_exception = False
        return error
    return gr.Error(str(error), print_exception=False)


def quiet_user_errors(blocks: gr.Blocks) -> gr.Blocks:
    """Log each user error of `blocks` as one line instead of a traceback (call before launch). Wraps
    process_api, so Gradio's own input checks (a Radio value not among its choices) count too."""
    process_api = blocks.process_api

    async def logged_process_api(block_fn, *args, **kwargs):
        try:
            return await process_api(block_fn, *args, **kwargs)
        except (RequestError, gr.Error) as error:
            fn = blocks.fns[block_fn] if isinstance(block_fn, int) else block_fn
            endpoint = f"/{fn.api_name}" if getattr(fn, "api_name", None) else getattr(fn, "name", "?")
            log.info("%s: %s", endpoint, one_line(error.message if isinstance(error, gr.Error) else error))
            raise _unprinted(error) from None
    if not getattr(process_api, "quiet_user_errors", False):
        logged_process_api.quiet_user_errors = True
        blocks.process_api = logged_process_api
    return blocks


def unprinted_user_errors(fn):
    """fn, its user errors marked not to print a traceback where they are re-raised (ZeroGPU re-raises a
    worker's exception in the server process, printing its traceback unless so marked)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(*args, **kwargs):
            try:
                return (yield from fn(*args, **kwargs))
            except (RequestError, gr.Error) as error:
                raise _unprinted(error) from None
        return generator

    @functools.wraps(fn)
    def function(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (RequestError, gr.Error) as error:
            raise _unprinted(error) from None
    return function
