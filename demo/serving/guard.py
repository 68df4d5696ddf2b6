"""What the server refuses before Gradio sees a request, and how user errors are logged.

RequestGuard (ASGI middleware), for the app at the root or under any root_path / mount prefix:
* a file or proxy route whose path names a URL (any scheme, also percent-encoded, or //host): 403. Gradio
  would fetch such a URL itself (a DNS lookup and a connection on the visitor's behalf); this app never hands
  out remote files, so nothing is looked up or fetched.
* uploads (the app has no upload widget): 403.
* a request body over `max_body` bytes: 413, from Content-Length when given and by counting the bytes
  received otherwise, before anything parses it.
* given the Blocks: an endpoint name that is not a public endpoint of the app (call/…, run/…, api/…) or a
  function index it does not have (queue/join): 404; a session_hash that is not 1 to 128 letters, digits,
  '-' or '_' (body, query or path): 422. Gradio would answer these with a 500 and a traceback.
Every refusal is one line of JSON: {"detail": "..."}.

quiet_user_errors: a user's mistake is logged as one line (time, endpoint, message cut to 80 characters) and
shown as one line of at most 200 characters, never with a traceback: RequestError, gr.Error, a value a
component cannot preprocess (named by its field) and too few values. Any other exception keeps
Gradio's traceback.
"""
from __future__ import annotations

import functools
import inspect
import json
import logging
import re
import sys
from urllib.parse import parse_qs, unquote

import gradio as gr
from gradio.exceptions import ComponentProcessingError

from demo.engine.validation import RequestError
from demo.serving.settings import one_line

MAX_BODY = 1 << 20                                     # bytes; the app's own requests are a few hundred
USER_LIMIT = 200                                       # characters of a user error shown to the user
ROUTE = re.compile(r"/+(?:gradio_api/+)?(file=|file/|proxy=|upload)(.*)$", re.S)
API = re.compile(r"(?:^|/)gradio_api/+(?:(?:call(?:/+v2)?|run|api)/+(?P<name>[^/]+)|(?P<route>queue/+join|cancel))"
                 r"/*$")
SESSION = re.compile(r"[A-Za-z0-9_\-]{1,128}")
SESSION_PATH = re.compile(r"/gradio_api/+(?:heartbeat|stream)/+([^/]*)")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
NO_BODY = {"GET", "HEAD", "OPTIONS"}
log = logging.getLogger("guidance_lab")
log.setLevel(logging.INFO)


def route(path: str) -> re.Match | None:
    """The file, proxy or upload route in `path`, after any prefix (a root_path, a mount point): the first
    segment that starts one (what follows it is the route's argument, e.g. a file's path)."""
    for start in (k for k, char in enumerate(path) if char == "/"):
        if (match := ROUTE.match(path, start)) is not None:
            return match
    return None


def refusal(path: str) -> str | None:
    """Why a request path is refused (None: it is not)."""
    decoded = path
    for _ in range(8):                                 # %2568 -> %68 -> h: decode until it no longer changes
        once = unquote(decoded)
        if once == decoded:
            break
        decoded = once
    for candidate in (path, decoded):
        match = route(candidate)
        if match is None:
            continue
        route_name, rest = match.groups()
        if route_name == "upload":
            return "uploads are not accepted" if rest in ("", "/") else None
        if route_name == "proxy=":
            return "this server proxies nothing"
        if SCHEME.match(rest) or rest.startswith(("//", "\\\\", "/\\", "\\/")):
            return "remote files are not fetched"
    return None


class RequestGuard:
    """ASGI middleware: see the module docstring. `blocks`: the app whose endpoints and functions it checks."""

    def __init__(self, app, max_body: int = MAX_BODY, blocks: gr.Blocks | None = None):
        self.app, self.max_body, self.blocks = app, max_body, blocks

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        raw = scope.get("raw_path")
        path = scope.get("path", "")
        reason = refusal(path) or (refusal(raw.decode("latin-1")) if raw else None)
        if reason:
            return await respond(send, 403, reason)
        if (problem := self.bad_session(path, scope.get("query_string", b""))) is not None:
            return await respond(send, 422, problem)
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
        if scope.get("method") == "POST" and (refused := self.bad_call(path, messages)) is not None:
            return await respond(send, *refused)

        async def replay():
            return messages.pop(0) if messages else await receive()
        return await self.app(scope, replay, send)

    def too_large(self) -> str:
        return f"request body larger than {self.max_body // 1024} KB"

    def bad_session(self, path: str, query: bytes) -> str | None:
        """Why a session_hash in the path or query is refused (None: none is, or there is none)."""
        found = [m.group(1) for m in SESSION_PATH.finditer(path)]
        found += parse_qs(query.decode("latin-1")).get("session_hash", [])
        return next((problem for value in found if (problem := session_problem(value))), None)

    def bad_call(self, path: str, messages: list[dict]) -> tuple[int, str] | None:
        """(status, why) for a call of an endpoint or function the app does not have, or a bad session_hash in
        the body; None: Gradio takes it from here."""
        match = API.search(path)
        if match is None or self.blocks is None:
            return None
        predict = match["name"] == "predict"           # run/predict: Gradio's route for events with queue=False
        if match["name"] is not None and not predict:
            if match["name"] not in public_endpoints(self.blocks):
                return 404, f"no endpoint /{one_line(match['name'], 40)} (GET /gradio_api/info lists them)"
        try:
            body = json.loads(b"".join(m.get("body", b"") for m in messages) or b"{}")
        except ValueError:                             # not JSON: Gradio answers 422
            return None
        if not isinstance(body, dict):
            return None
        if "session_hash" in body and body["session_hash"] is not None:
            if (problem := session_problem(body["session_hash"])) is not None:
                return 422, problem
        index = body.get("fn_index")
        if (predict or (match["route"] or "").startswith("queue")) and index is not None:
            if isinstance(index, str) and index.strip().lstrip("-").isdigit():
                index = int(index)                     # as Gradio's model would read it
            if isinstance(index, int) and not isinstance(index, bool) and index not in self.blocks.fns:
                return 404, f"no function with index {index}"
        return None


def session_problem(value) -> str | None:
    if isinstance(value, str) and SESSION.fullmatch(value):
        return None
    return "session_hash must be 1 to 128 letters, digits, '-' or '_'"


def public_endpoints(blocks: gr.Blocks) -> set[str]:
    """The api names a client may call by name (Gradio's "private" ones are for the page's own events)."""
    return {fn.api_name for fn in blocks.fns.values()
            if fn.api_name and fn.fn is not None and getattr(fn, "api_visibility", "public") != "private"}


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


def _unprinted(error: Exception | str) -> gr.Error:
    """The gr.Error that shows a user error to the user, as one line of at most USER_LIMIT characters, without
    a server traceback."""
    if isinstance(error, gr.Error):
        error.message = one_line(error.message, USER_LIMIT)
        error.print_exception = False
        return error
    return gr.Error(one_line(error, USER_LIMIT), print_exception=False)


def field(fn, index: int) -> str:
    """What a user calls input `index` of event `fn`: its API parameter name, else the component's label."""
    names = getattr(fn, "input_parameter_names", None) or []
    if index < len(names) and names[index]:
        return names[index]
    block = fn.inputs[index] if index < len(fn.inputs) else None
    return getattr(block, "label", None) or f"value {index + 1}"


def wrong_count(fn, inputs) -> str | None:
    """'expected 15 values, got 3: label, mode, …' if `inputs` are too few or too many for fn (None: they fit,
    with the ones Gradio fills in itself, such as a State)."""
    if getattr(fn, "batch", False) or not isinstance(inputs, list) or len(inputs) == len(fn.inputs):
        return None
    if len(inputs) > len(fn.inputs):
        api = [k for k, block in enumerate(fn.inputs) if not getattr(block, "skip_api", False)]
        return f"expected {len(api)} values, got {len(inputs)}: {', '.join(field(fn, k) for k in api)}"
    api = [k for k, block in enumerate(fn.inputs) if not getattr(block, "skip_api", False)]
    if len(inputs) >= len(api):
        return None
    return f"expected {len(api)} values, got {len(inputs)}: {', '.join(field(fn, k) for k in api)}"


def user_message(fn, inputs, error: Exception) -> str | None:
    """The user's mistake behind `error`, in words (None: not a user's mistake)."""
    if isinstance(error, gr.Error):
        return error.message
    if isinstance(error, RequestError):
        return str(error)
    if isinstance(error, ComponentProcessingError):    # a value one input cannot read (Gradio's preprocess)
        where = re.search(r"preprocess input component at index (\d+)", str(error))
        if where is None:                              # postprocess: our output, a bug
            return None
        index = int(where.group(1))
        value = one_line(repr(inputs[index]), 40) if isinstance(inputs, list) and index < len(inputs) else "it"
        cause = error.__cause__ if error.__cause__ is not None else error
        return f"{field(fn, index)}: cannot read {value} ({type(cause).__name__}: {cause})"
    if isinstance(error, ValueError) and "didn't receive enough input values" in str(error):
        return f"expected {len(fn.inputs)} values, got {len(inputs) if isinstance(inputs, list) else 0}"
    return None


def quiet_user_errors(blocks: gr.Blocks) -> gr.Blocks:
    """Log each user error of `blocks` as one line instead of a traceback, and show it as one bounded line
    (call before launch). Wraps process_api, so Gradio's own input checks (a Radio value not among its
    choices, a value a Slider cannot read, too few values) count too."""
    process_api = blocks.process_api

    async def logged_process_api(block_fn, *args, **kwargs):
        fn = blocks.fns[block_fn] if isinstance(block_fn, int) else block_fn
        inputs = kwargs["inputs"] if "inputs" in kwargs else args[0] if args else None
        try:
            if (count := wrong_count(fn, inputs)) is not None:
                raise gr.Error(count)
            return await process_api(block_fn, *args, **kwargs)
        except Exception as error:
            message = user_message(fn, inputs, error)
            if message is None:
                raise
            endpoint = f"/{fn.api_name}" if getattr(fn, "api_name", None) else getattr(fn, "name", "?")
            log.info("%s: %s", endpoint, one_line(message))
            raise _unprinted(error if isinstance(error, gr.Error) else message) from None
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
