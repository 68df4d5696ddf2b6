"""The Gradio app: handlers called directly, the server driven over HTTP and in a real browser."""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

import app
from demo.engine.guidance import GUIDANCE, METHODS
from demo.serving import service as svc
from demo.toy import lab as toy_lab
from demo.ui import views

GUIDED = METHODS[1:]

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = dict(label=3, mode="same", weight=2.0, w_classifier=3.0, w_cfg=1.0, w_gfcg=3.0, w_autoguidance=0.5,
                w_gfcg_ag=1.0, guide="default", num_steps=12, sampler="ddim", num_samples=4, seed=1, sigma_lo=0.0,
                sigma_hi=80.0)


def values(follow: int = 0, **changes) -> list:
    return [*{**SETTINGS, **changes}.values(), follow]


@pytest.fixture(scope="module")
def service(models):
    app.SERVICE = svc.Service(models)
    yield app.SERVICE
    app.SERVICE = None


def drain(generator):
    outputs = []
    for outputs in generator:
        pass
    return outputs


def test_build_has_the_public_api():
    blocks = app.build()
    names = {d.api_name for d in blocks.fns.values() if d.api_name}
    assert {"compare", "trajectory", "sweep", "toy"} <= names


def test_compare_handler_returns_one_aligned_picture(service):
    picture, summary, status, download = drain(app.on_compare(*values()))
    assert picture.count('class="gl-row"') == len(METHODS)                 # one row per method
    assert picture.count("data-sample=") == len(METHODS) * 4               # a cell per sample
    assert all(GUIDANCE[m].short_title in picture for m in METHODS) and "data:image/png;base64," in picture
    assert all(GUIDANCE[m].short_title in summary for m in METHODS) and "| w |" in summary
    assert "digit 3" in status and Path(download).suffix == ".png"
    with Image.open(download) as grid:
        assert grid.width > 4 * 56
    filmstrip, gif, plots = drain(app.on_trajectory(*values(follow=2)))
    assert filmstrip.count('class="gl-frame"') == len(METHODS) * 2 * 10 and "σ" in filmstrip
    assert Path(gif).read_bytes()[:6] == b"GIF89a"
    assert len(plots.axes) == 2


def test_each_method_at_its_own_w(service):
    picture, summary, status, _ = drain(app.on_compare(*values(mode="own", w_autoguidance=3.0, w_gfcg_ag=20.0)))
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in summary.splitlines()[2:8]}
    assert rows == {"Unguided": "–", "Classifier": "3", "Classifier-free": "1", "Gradient-free": "3",
                    "Autoguidance": "3", "GFCG + AG": "20"}
    assert "w per method" in status
    assert "Autoguidance with this guide at w = 3 is past" not in picture       # the recommended guide holds at 3


def test_the_guide_changes_autoguidance_and_its_measured_range(service):
    default = drain(app.on_compare(*values(mode="own", w_autoguidance=3.0)))
    early = drain(app.on_compare(*values(mode="own", w_autoguidance=3.0, guide="collapses_early")))
    assert "Autoguidance with this guide at w = 3 is past w ≈ 1.3" in early[0]      # the study's number
    assert "Autoguidance with this guide" not in default[0]
    assert early[0] != default[0]
    captions = app.on_guide("collapses_early")
    assert "best FID at 0.5; degrades beyond ≈ 1.3" == captions[GUIDED.index("autoguidance")]["info"]
    with pytest.raises(gr.Error, match="unknown guide"):
        drain(app.on_compare(*values(guide="nope")))


def test_changing_only_w_reuses_the_unguided_run_and_views_recompute_nothing(service):
    drain(app.on_compare(*values()))
    before = service.runs_computed
    drain(app.on_compare(*values(weight=3.5)))
    assert service.runs_computed == before + len(METHODS) - 1          # unguided came from the cache
    drain(app.on_compare(*values(weight=0.0)))
    assert service.runs_computed == before + len(METHODS) - 1          # w = 0: every method is the unguided run
    drain(app.on_trajectory(*values(follow=1, weight=3.5)))
    assert service.runs_computed == before + len(METHODS) - 1


def test_the_w_ladder_makes_moving_w_instant(service):
    settings = values(seed=31)[:-1]
    assert "ready" in drain(app.on_ladder(*settings))
    before = service.runs_computed
    for w in svc.LADDER:
        picture, *_ = drain(app.on_compare(*values(seed=31, weight=w)))
        assert f"w = {w:g}" in picture or w == 0
    assert service.runs_computed == before                               # not one run sampled
    drain(app.on_compare(*values(seed=31, weight=2.25)))                  # between ladder values: sampled
    assert service.runs_computed == before + len(METHODS) - 1
    assert "ready" in drain(app.on_ladder(*settings)) and service.runs_computed == before + len(METHODS) - 1


def test_comparison_samples_all_methods_together_as_they_would_alone(service, models):
    """Lockstep batching is a speed-up only: each method's samples match its run alone (up to float rounding
    of the larger batch), and the same comparison twice is bitwise identical."""
    base = svc.parse_request(*[SETTINGS[k] for k in ("label", "weight", "num_steps", "sampler", "num_samples",
                                                     "seed")])
    runs = svc.Service(models).compare(base).runs
    again = svc.Service(models).compare(base).runs
    for method, run in runs.items():
        assert torch.equal(run.samples, again[method].samples)
        (alone,) = svc.run_methods(models, [replace(base, method=method)])
        torch.testing.assert_close(run.samples, alone.samples, rtol=0, atol=2e-3)
        np.testing.assert_allclose(run.p_target, alone.p_target, atol=2e-3)


@pytest.mark.parametrize("field,value,message", [
    ("mode", "both", "unknown w mode"),
    ("w_cfg", -1.0, None),
    ("label", 10, "class must be between 0 and 9"),
    ("label", -1, "class must be between 0 and 9"),
    ("weight", -0.5, "w must be between 0 and 20"),
    ("weight", 20.5, "w must be between 0 and 20"),
    ("weight", float("inf"), "w must be finite"),
    ("weight", "abc", "w must be a number"),
    ("num_steps", 0, "steps must be between 1 and 1000"),
    ("num_steps", 1001, "steps must be between 1 and 1000"),
    ("seed", 1.5, "seed must be a whole number"),
    ("seed", "lucky", "seed must be a number"),
    ("seed", True, "seed must be a number"),
    ("label", [3], "class must be a number"),
    ("weight", None, "w must be a number"),
    ("seed", -3, "seed must be between"),
    ("num_samples", 65, "number of samples must be between 1 and 64"),
    ("sampler", "euler", "unknown sampler"),
    ("sigma_lo", 5.0, None),
])
def test_bad_input_gets_a_clear_message(service, field, value, message):
    settings = {field: value}
    if field == "sigma_lo":
        settings["sigma_hi"], message = 1.0, "high sigma must be a number >= the low sigma"
    if field == "w_cfg":
        settings["mode"], message = "own", "w must be between 0 and 20"
    with pytest.raises(gr.Error, match=message):
        drain(app.on_compare(*values(**settings)))


def test_sweep_handler_draws_every_method_and_weight(service):
    before = service.runs_computed
    picture, figure = drain(app.on_sweep(3, 4, "ddim", 2, 0, 0.0, 80.0))
    guided = len(METHODS) - 1
    assert service.runs_computed - before <= guided * (len(svc.SWEEP_WEIGHTS) - 1) + 1   # w = 0 is shared
    assert picture.count('class="gl-frame') == guided * len(svc.SWEEP_WEIGHTS) * 2
    assert "digit 3" in picture and "seed 0" in picture                  # it says what it shows
    assert len(figure.axes[0].lines) == guided


def test_toy_handler_and_its_errors(service):
    figure, table = drain(app.on_toy("three classes, overlapping", 1, 2.0, 20, 100, 0, True, 10))
    assert len(figure.axes) == len(METHODS) and "exact tilted" in table and "sampled in" in table
    _, again = drain(app.on_toy("three classes, overlapping", 1, 2.0, 20, 100, 0, True, 10))
    assert "from cache" in again                                  # a cached result is not timed as new
    with pytest.raises(gr.Error, match="class must be between 0 and 2"):     # the API can still send it
        drain(app.on_toy("three classes, overlapping", 3, 2.0, 20, 100, 0, False, 10))
    with pytest.raises(gr.Error, match="unknown mixture"):
        drain(app.on_toy("nope", 0, 2.0, 20, 100, 0, False, 10))


@pytest.mark.parametrize("preset", list(toy_lab.PRESETS))
def test_toy_class_picker_follows_the_mixture(preset):
    radio = app.on_toy_preset(preset, 3)
    assert radio.choices == [(str(c), c) for c in range(toy_lab.PRESETS[preset]().num_classes)]
    assert radio.value in range(toy_lab.PRESETS[preset]().num_classes)


def test_stop_buttons_cancel_every_long_run():
    """Stop ends a comparison, a sweep and a 2-D lab run (each tab has its own Stop)."""
    fns = app.build().fns.values()
    cancelled = {fn.name for stop in fns for index in stop.cancels for fn in fns if fn._id == index}
    assert {"on_compare", "on_sweep", "on_toy"} <= cancelled


def test_summary_says_which_runs_came_from_the_cache(service):
    base = svc.parse_request(3, 2.0, 12, "ddim", 4, 77)
    first = service.compare(base)
    assert "sampled together" in views.summary(first) and "from cache" not in views.summary(first)
    second = service.compare(replace(base, weight=4.0))            # unguided is reused
    guided = len(METHODS) - 1
    assert "1 run from cache" in views.summary(second) and f"{guided} runs sampled together" in views.summary(second)
    assert f"{len(METHODS)} runs from cache" in views.summary(service.compare(base))


def test_a_new_method_samples_alongside_the_shipped_ones(service, away_from_zero):
    base = svc.parse_request(3, 2.0, 12, "ddim", 4, 78)
    results = service.compare(base, methods=(*METHODS, "away_from_zero"))
    assert list(results.runs) == [*METHODS, "away_from_zero"] and len(results.fresh_batches) == 1
    assert not torch.equal(results.runs["away_from_zero"].samples, results.runs["unguided"].samples)


def test_trajectory_of_a_run_this_process_never_sampled_is_recomputed(models, monkeypatch):
    """No endpoint depends on what one process remembers: the same settings give the same bytes."""
    monkeypatch.setattr(app, "SERVICE", svc.Service(models))
    first = drain(app.on_trajectory(*values(seed=55, follow=1)))
    monkeypatch.setattr(app, "SERVICE", svc.Service(models))           # a fresh process, as it were
    second = drain(app.on_trajectory(*values(seed=55, follow=1)))
    assert first[0] == second[0] and Path(first[1]).read_bytes() == Path(second[1]).read_bytes()


def test_picking_a_digit_follows_it():
    class Event:
        _data = {"sample": 5}
    assert app.on_pick(0, Event()) == 5
    assert app.on_pick(3, type("Empty", (), {"_data": None})()) == 3


# ---- the real server -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_gradio_client_gets_the_comparison(server):
    from gradio_client import Client
    client = Client(server, verbose=False)
    args = values(seed=5, num_steps=8, num_samples=3)
    picture, summary, status, download = client.predict(*args, api_name="/compare")
    assert picture.count("data-sample=") == len(METHODS) * 3 and "Autoguidance" in summary
    assert download.endswith(".png")
    with pytest.raises(Exception, match="high sigma must be a number >= the low sigma"):
        client.predict(*values(sigma_lo=5.0, sigma_hi=1.0), api_name="/compare")
    filmstrip, gif, _ = client.predict(*args, api_name="/trajectory")
    assert "gl-frame" in filmstrip and gif.endswith(".gif")
    # the server is still healthy after bad input
    assert "data-sample" in client.predict(*values(seed=0, num_steps=4, num_samples=2), api_name="/compare")[0]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SIZES = {"projector": (1024, 768), "laptop": (1440, 900), "phone": (390, 844)}


def open_page(browser, server, size):
    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
    page.goto(server, wait_until="domcontentloaded")
    page.locator("#comparison .gl-cell img").first.wait_for(timeout=120_000)     # no click needed
    return page


def runs_computed(page) -> int:
    return int(page.locator("#comparison .gl-comparison").get_attribute("data-runs-computed"))


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    from demo.tools.screenshots import CHROMIUM_ARGS
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.mark.slow
@pytest.mark.parametrize("size", list(SIZES))
def test_browser_shows_a_finished_comparison_on_arrival_and_nothing_is_clipped(server, browser, size, tmp_path):
    width, height = SIZES[size]
    page = open_page(browser, server, (width, height))
    assert page.locator("#comparison .gl-cell").count() == len(METHODS) * 8
    boxes = page.evaluate("""() => [...document.querySelectorAll('#comparison .gl-cell img, #comparison .gl-name')]
        .map((el) => { const r = el.getBoundingClientRect(), c = el.closest('.gl-row').getBoundingClientRect();
                       return [r.left, r.right, r.top, r.bottom, c.left, c.right, c.top, c.bottom, r.width]; })""")
    for left, right, top, bottom, c_left, c_right, c_top, c_bottom, w in boxes:
        assert w > 0 and left >= c_left - 1 and right <= c_right + 1 and top >= c_top - 1 and bottom <= c_bottom + 1
        assert 0 <= left and right <= width                                # inside the viewport's width
    names = page.locator("#comparison .gl-name").evaluate_all("els => els.map(e => getComputedStyle(e).fontSize)")
    assert all(float(px[:-2]) >= 14 for px in names)                       # method names readable from afar
    if size == "projector":                                                 # the whole result above the fold
        picture = page.locator("#comparison .gl-comparison").bounding_box()
        generate = page.locator("#generate").bounding_box()
        assert picture["y"] + picture["height"] <= height and generate["y"] + generate["height"] <= height
    page.screenshot(path=str(tmp_path / f"{size}.png"))
    page.close()


@pytest.mark.slow
def test_browser_ladder_w_change_samples_nothing_and_a_click_follows_a_digit(server, browser):
    page = open_page(browser, server, SIZES["projector"])
    page.locator("#ladder-status").get_by_text("ready").wait_for(timeout=300_000)
    box = page.locator("#weight-cfg input[type=number]")
    counts = []
    for w in ("1.5", "2"):                                                 # two ladder values, one after another
        box.fill(w)
        box.press("Enter")
        page.locator(f'#comparison .gl-label:has-text("w = {w} ·")').first.wait_for(timeout=30_000)
        counts.append(runs_computed(page))
    assert counts[0] == counts[1]                                          # from the ladder: no new sampling
    strip = page.locator("#filmstrip .gl-frame img").first
    strip.wait_for(timeout=120_000)
    first_frames = page.locator("#filmstrip").inner_html()
    page.locator('#comparison .gl-cell[data-sample="5"]').first.click()
    page.wait_for_function("(old) => document.querySelector('#filmstrip').innerHTML !== old", arg=first_frames,
                           timeout=60_000)
    assert page.locator('#comparison .gl-cell.gl-selected[data-sample="5"]').count() >= 1
    page.close()


def test_handlers_do_their_torch_work_on_the_one_compute_thread(service, monkeypatch):
    """demo/compute.py: a second thread running torch ops makes OpenMP stop spinning (measured 1.6x slower)."""
    import threading

    import demo.serving.scheduler
    from demo.serving.compute import COMPUTE
    seen = set()
    original = demo.serving.scheduler.step_together

    def spy(*args, **kwargs):
        seen.add(threading.current_thread())
        return original(*args, **kwargs)
    monkeypatch.setattr(demo.serving.scheduler, "step_together", spy)
    drain(app.on_compare(*values(seed=99)))
    assert seen == {COMPUTE.thread} and COMPUTE.thread is not threading.current_thread()
    assert COMPUTE.call(COMPUTE.call, threading.current_thread) is COMPUTE.thread        # re-entrant
