"""Every bad input gets one line that names its field, for the caller and in the log, and never a traceback
(issue 24's acceptance): one table of bad values, wrong types included, sent to every endpoint of the running
app by raw HTTP (Gradio's REST protocol) and by gradio_client."""
from __future__ import annotations

import time

import pytest

from demo.tools.launcher import launch_app, rest_call
from demo.ui.form import COMPARE, SWEEP, TOY

ENDPOINTS = {"compare": COMPARE, "trajectory": COMPARE, "sweep": SWEEP, "toy": TOY}
BAD = [   # (endpoint, field, value, what the line says after "<label> (<field>) ")
    ("compare", "label", 10, "must be between 0 and 9, got 10"),
    ("compare", "label", "abc", "must be a number, got 'abc'"),
    ("compare", "label", None, "must be a number, got None"),
    ("compare", "seed", 1.5, "must be a whole number, got 1.5"),
    ("compare", "num_steps", 10.5, "must be a whole number, got 10.5"),
    ("compare", "num_steps", [1, 2], "must be a number, got [1, 2]"),
    ("compare", "w_cfg", "abc", "must be a number, got 'abc'"),
    ("compare", "w_cfg", 11, "must be between 0 and 10, got 11"),
    ("compare", "w_cfg", {"w": 1}, "must be a number, got {'w': 1}"),
    ("compare", "mode", "both", "must be one of same, own; got 'both'"),
    ("compare", "guide", "nope", "must be one of default, collapses_early, mild; got 'nope'"),
    ("compare", "sampler", "euler", "must be one of ddim, ancestral, dpmpp_2m, dpmpp_3m; got 'euler'"),
    ("compare", "sigma_lo", -1, "must be between 0 and 80, got -1"),
    ("compare", "num_samples", 0, "must be between 1 and 64, got 0"),
    ("compare", "forming", "z", "must be one of x0, xt; got 'z'"),
    ("trajectory", "seed", "abc", "must be a number, got 'abc'"),
    ("trajectory", "w_gfcg", -0.5, "must be between 0 and 10, got -0.5"),
    ("sweep", "sample", 0, "must be between 1 and 64, got 0"),
    ("sweep", "num_steps", "32", "must be a number, got '32'"),
    ("sweep", "guide", 5, "must be one of default, collapses_early, mild; got 5"),
    ("toy", "preset", "nope", "must be one of "),
    ("toy", "weight", "abc", "must be a number, got 'abc'"),
    ("toy", "show_field", "yes", "must be true or false, got 'yes'"),
    ("toy", "num_samples", 5, "must be between 10 and 5000, got 5"),
    ("toy", "field_step", "abc", "must be a number, got 'abc'"),
    ("toy", "label", 1.5, "must be a whole number, got 1.5"),
]


@pytest.fixture(scope="module")
def app():
    with launch_app() as (url, process):
        yield url, process


def _log_after(process, before: int, lines: int) -> list[str]:
    deadline = time.monotonic() + 10
    while len(process.output()[before:].strip().splitlines()) < lines and time.monotonic() < deadline:
        time.sleep(0.1)
    return process.output()[before:].strip().splitlines()


@pytest.mark.slow
def test_every_bad_input_is_one_line_naming_its_field_by_http_and_by_gradio_client(app):
    from gradio_client import Client
    url, process = app
    client = Client(url, verbose=False)
    before = len(process.output())
    for api, name, value, says in BAD:
        field = ENDPOINTS[api][name]
        expected = f"{field.label} ({name}) {says}"
        with pytest.raises(RuntimeError) as by_http:
            rest_call(url, ENDPOINTS[api].api_defaults(**{name: value}), api_name=api, timeout=60)
        assert expected in str(by_http.value) and "\n" not in str(by_http.value), (api, name, str(by_http.value))
        with pytest.raises(Exception) as by_client:
            client.predict(**{name: value}, api_name=f"/{api}")
        assert expected in str(by_client.value) and "\n" not in str(by_client.value), (api, name, str(by_client.value))
    log = _log_after(process, before, 2 * len(BAD))
    assert len(log) == 2 * len(BAD), log                                    # one line per bad call
    for line, (api, name, _, _) in zip(log, [case for case in BAD for _ in range(2)]):
        assert f"/{api}: " in line and f"({name})" in line, line
    assert not any("Traceback" in line for line in log)
    assert "data-sample" in rest_call(url, COMPARE.api_defaults(num_steps=3, num_samples=2))[0]   # still healthy
