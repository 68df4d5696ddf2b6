"""The request guard and one-line user errors (demo/serving/guard.py), and the idle queue (idle.py): what is
refused before Gradio sees it, under any root_path too; unknown endpoints, function indexes and session hashes;
Gradio's own input errors as one bounded line naming the field."""
from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.error
import urllib.request
import uuid

import gradio as gr
import pytest
from conftest import free_port

from demo.engine.validation import RequestError
from demo.serving import guard, idle, server


@pytest.fixture()
def log_lines():
    """The app log's lines while the test runs."""
    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    guard.log.addHandler(handler)
    yield lines
    guard.log.removeHandler(handler)


# ---- requests refused before Gradio sees them ----------------------------------------------------------------------

@pytest.mark.parametrize("path,refused", [
    ("/gradio_api/file=https://example.com/x.png", True),
    ("/gradio_api/file=http%3A%2F%2Fexample.com%2Fx.png", True),
    ("/gradio_api/file=https%253A%252F%252Fexample.com", True),            # encoded twice
    ("/gradio_api/file=//example.com/x.png", True),
    ("/gradio_api/file=ftp://example.com/x", True),
    ("/gradio_api/file/https://example.com/x.png", True),
    ("/file=https://example.com/x.png", True),
    ("/gradio_api/proxy=https://x.hf.space/file=a.png", True),
    ("/gradio_api/upload", True),
    ("/gradio_api/file=/tmp/guidance_lab-x/files/ab/grid.png", False),
    ("/gradio_api/upload_progress", False),
    ("/gradio_api/queue/join", False),
    ("/", False),
    ("/lab/gradio_api/file=https://example.com/x.png", True),               # under a root_path or mount point
    ("/a/b/gradio_api/file=http%3A%2F%2Fexample.com", True),
    ("/lab/gradio_api/proxy=https://x.hf.space/file=a.png", True),
    ("/lab/file=//example.com/x.png", True),
    ("/lab/gradio_api/upload", True),
    ("/lab/gradio_api/file=/tmp/guidance_lab-x/files/upload", False),      # a file path, not the upload route
    ("/lab/gradio_api/upload_progress", False),
])
def test_refused_paths(path, refused):
    assert (guard.refusal(path) is not None) == refused


def test_guard_refuses_large_bodies_before_the_app_reads_them():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    async def echo(request):
        return JSONResponse({"size": len(await request.body())})
    client = TestClient(guard.RequestGuard(Starlette(routes=[Route("/echo", echo, methods=["POST"])]),
                                           max_body=1000))
    assert client.post("/echo", content=b"x" * 1000).json() == {"size": 1000}
    assert client.post("/echo", content=b"x" * 1001).status_code == 413                  # Content-Length
    assert client.post("/echo", content=(b"x" * 300 for _ in range(4))).status_code == 413  # streamed, counted
    assert client.post("/echo", content=(b"x" * 300 for _ in range(3))).json() == {"size": 900}
    assert client.get("/gradio_api/file=https://example.com/x.png").status_code == 403


def test_user_errors_are_one_log_line_and_other_errors_keep_their_traceback(log_lines):
    raised = []
    with gr.Blocks() as blocks:
        box = gr.Number()
        box.change(lambda x: x, box, box, api_name="compare")
    block_fn = next(fn for fn in blocks.fns.values() if fn.api_name == "compare")

    async def process_api(block_fn, *args, **kwargs):           # Gradio's: preprocess, the handler, postprocess
        raise raised[-1]
    blocks.process_api = process_api
    guard.quiet_user_errors(blocks)
    for error in (RequestError("class must be between 0 and 9, got " + "9" * 200),
                  gr.Error("Value: 10 is not in the list of choices\n[0, 1, 2]")):
        raised.append(error)
        with pytest.raises(gr.Error) as shown:
            asyncio.run(blocks.process_api(block_fn, [0]))
        assert shown.value.print_exception is False                      # Gradio prints no traceback
    lines = log_lines
    assert lines[0].startswith("/compare: class must be between 0 and 9, got 999") and lines[0].endswith("…")
    assert len(lines[0]) == len("/compare: ") + 80
    assert lines[1] == "/compare: Value: 10 is not in the list of choices [0, 1, 2]" and len(lines) == 2
    raised.append(ZeroDivisionError("a bug"))
    with pytest.raises(ZeroDivisionError):                               # Gradio prints its traceback
        asyncio.run(blocks.process_api(block_fn, [0]))
    assert len(lines) == 2


# ---- a small app behind the guard, under a root_path ----------------------------------------------------------

def compare(label, seed, follow):
    """A stand-in for /compare: named, typed inputs and a State."""
    return f"digit {label}, seed {seed:g}"


def small_app() -> gr.Blocks:
    with gr.Blocks() as blocks:
        label = gr.Radio([0, 1, 2], value=0, label="Digit")
        seed = gr.Slider(0, 10, value=1, label="Seed")
        follow = gr.State(0)
        out = gr.Textbox()
        gr.Button().click(compare, [label, seed, follow], out, api_name="compare")
        gr.Button().click(lambda x: x, label, out, api_name="secret", api_visibility="private")
    return blocks


@pytest.fixture(scope="module")
def small_server():
    """small_app() launched as the app is (server.launch), with root_path /lab; yields (url, blocks)."""
    port = free_port()
    blocks = server.launch(small_app(), "127.0.0.1", port, block=False, root_path="/lab")
    yield f"http://127.0.0.1:{port}", blocks
    blocks.close()


def http(url: str, body=None) -> tuple[int, bytes]:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.mark.parametrize("prefix", ["", "/lab"])
def test_the_guard_covers_an_app_under_a_root_path(small_server, prefix):
    """Issue 20 §3.9: routes were matched only at the root, so /lab/gradio_api/file=https://… escaped."""
    url, _ = small_server
    assert http(f"{url}{prefix}/gradio_api/info")[0] == 200                 # the prefix reaches the app
    assert http(f"{url}{prefix}/gradio_api/file=https://example.com/x.png") == \
        (403, b'{"detail": "remote files are not fetched"}')


@pytest.mark.parametrize("prefix", ["", "/lab"])
@pytest.mark.parametrize("route,body,detail", [
    ("call/nope", {"data": [1]}, "no endpoint /nope"),
    ("call/v2/nope", {}, "no endpoint /nope"),
    ("run/nope", {"data": [1]}, "no endpoint /nope"),
    ("api/nope", {"data": [1]}, "no endpoint /nope"),
    ("run/secret", {"data": [1]}, "no endpoint /secret"),                    # private: the page's own event
    ("queue/join", {"data": [], "fn_index": 9999, "session_hash": "abc"}, "no function with index 9999"),
    ("queue/join", {"data": [], "fn_index": -1, "session_hash": "abc"}, "no function with index -1"),
    ("queue/join", {"data": [], "fn_index": "9999", "session_hash": "abc"}, "no function with index 9999"),
    ("queue/join", {"data": [0, 1, None], "fn_index": 0, "session_hash": "s" * 10_000}, "session_hash must be"),
    ("queue/join", {"data": [0, 1, None], "fn_index": 0, "session_hash": "a b"}, "session_hash must be"),
    ("cancel", {"session_hash": "s" * 129, "fn_index": 0, "event_id": "x"}, "session_hash must be"),
])
def test_unknown_endpoints_functions_and_sessions_are_refused_in_one_line(small_server, prefix, route, body, detail):
    """Issue 24 §1: these gave HTTP 500 and a 69-76-line traceback."""
    url, _ = small_server
    status, reply = http(f"{url}{prefix}/gradio_api/{route}", body)
    assert status == (422 if "session_hash" in detail else 404)
    assert json.loads(reply)["detail"].startswith(detail) and b"\n" not in reply and len(reply) < 200


@pytest.mark.parametrize("path", ["/gradio_api/queue/data?session_hash=" + "q" * 10_000,
                                  "/gradio_api/heartbeat/" + "h" * 200, "/lab/gradio_api/heartbeat/" + "h" * 200])
def test_long_session_hashes_in_paths_and_queries_are_refused(small_server, path):
    url, _ = small_server
    status, reply = http(url + path)
    assert status == 422 and json.loads(reply)["detail"].startswith("session_hash must be")


def test_the_app_s_own_calls_pass_the_guard(small_server):
    url, _ = small_server
    for session in ("k3j4h5g6f7d", str(uuid.uuid4())):                      # the browser's and gradio_client's
        status, reply = http(f"{url}/gradio_api/queue/join", {"data": [1, 2, None], "fn_index": 0,
                                                               "session_hash": session})
        assert status == 200 and "event_id" in json.loads(reply)
    status, reply = http(f"{url}/lab/gradio_api/call/compare", {"data": [2, 3]})
    assert status == 200 and "event_id" in json.loads(reply)
    status, _ = http(f"{url}/gradio_api/run/predict", {"data": [1, 2, None], "fn_index": 0,   # queue=False events
                                                       "session_hash": "k3j4h5g6f7d"})
    assert status != 404                                                    # the guard lets the page's own through
    status, reply = http(f"{url}/gradio_api/run/predict", {"data": [], "fn_index": 9999, "session_hash": "abc"})
    assert status == 404 and b"no function with index 9999" in reply


def test_gradio_s_own_error_is_cut_to_one_bounded_line(small_server, log_lines):
    """Issue 24 §1: a 500,000-character label produced a 500,178-byte error reply."""
    url, _ = small_server
    _, reply = http(f"{url}/gradio_api/call/compare", {"data": ["x" * 500_000, 3]})
    event = json.loads(reply)["event_id"]
    with urllib.request.urlopen(f"{url}/gradio_api/call/compare/{event}", timeout=60) as stream:
        events = stream.read().decode()
    assert "event: error" in events and len(events) < 1000
    message = json.loads(events.split("event: error\ndata: ", 1)[1].splitlines()[0])["error"]
    assert message.startswith("Value: 'xxx") and len(message) <= guard.USER_LIMIT
    assert len(log_lines) == 1 and len(log_lines[0]) <= len("/compare: ") + 80


# ---- Gradio's input errors: one line naming the field (process_api, as the queue calls it) -----------------------

@pytest.mark.parametrize("inputs,message", [
    ([1], "expected 2 values, got 1: label, seed"),
    ([1, "abc", 0], "seed: cannot read 'abc' (TypeError"),
    ([1, [1, 2], 0], "seed: cannot read [1, 2] (TypeError"),
    ([1, {"w": 1}, 0], "seed: cannot read {'w': 1} (TypeError"),
    ([7, 2, 0], "Value: 7 (type: <class 'int'>) is not in the list of choices"),
    (["x" * 500_000, 2, 0], "Value: 'xxxxx"),
])
def test_input_errors_are_one_bounded_line_that_names_the_field(inputs, message, log_lines):
    """Issue 24 §1: wrong types and counts gave {"error": null} and a 23-42-line ComponentProcessingError."""
    blocks = guard.quiet_user_errors(small_app())
    fn = next(f for f in blocks.fns.values() if f.api_name == "compare")
    with pytest.raises(gr.Error) as error:
        asyncio.run(blocks.process_api(fn, inputs=inputs, state=None))
    shown = error.value.message
    assert shown.startswith(message) and "\n" not in shown and len(shown) <= guard.USER_LIMIT
    assert error.value.print_exception is False                             # no traceback
    assert log_lines == [guard.one_line(f"/compare: {guard.one_line(shown)}", 200)]
    assert asyncio.run(blocks.process_api(fn, inputs=[2, 3, 0], state=None))["data"] == ["digit 2, seed 3"]


@pytest.mark.parametrize("handler", [lambda x: 12345, lambda x: int("not a user's mistake")])
def test_a_bug_in_a_handler_or_its_output_keeps_its_traceback(handler, log_lines):
    with gr.Blocks() as blocks:
        box = gr.Number()
        box.change(handler, box, gr.Image(), api_name="compare")
    guard.quiet_user_errors(blocks)
    fn = next(f for f in blocks.fns.values() if f.api_name == "compare")
    with pytest.raises(ValueError) as error:                # ComponentProcessingError (postprocess), ValueError
        asyncio.run(blocks.process_api(fn, inputs=[1], state=None))
    assert not isinstance(error.value, gr.Error) and log_lines == []


# ---- an idle queue sleeps ----------------------------------------------------------------------------------------

def test_the_queue_polls_slowly_when_idle_and_fast_when_busy(small_server):
    """Issue 24 §5: an idle server used 5-7% of a CPU (Gradio's queue polls every 1 ms)."""
    url, blocks = small_server
    queue = blocks._queue
    assert isinstance(queue, idle.QuietQueue)
    queue.__dict__.pop("last_push", None)
    assert queue.sleep_when_free == queue.progress_update_sleep_when_free == idle.IDLE_POLL
    began = time.perf_counter()
    status, reply = http(f"{url}/gradio_api/queue/join", {"data": [1, 2, None], "fn_index": 0, "session_hash": "a1"})
    assert status == 200 and time.perf_counter() - began < 5
    assert queue.sleep_when_free == 0.001 and queue.progress_update_sleep_when_free == 0.01   # Gradio's own
