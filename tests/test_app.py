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
from demo import explorer as ex
from demo import toy_lab, views
from demo.guidance import GUIDANCE, METHODS

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = dict(label=3, weight=2.0, num_steps=12, sampler="ddim", num_samples=4, seed=1, sigma_lo=0.0,
                sigma_hi=80.0)


@pytest.fixture(scope="module")
def explorer(models):
    app.EXPLORER = ex.Explorer(models)
    yield app.EXPLORER
    app.EXPLORER = None


def drain(generator):
    outputs = []
    for outputs in generator:
        pass
    return outputs


def test_build_has_the_public_api():
    blocks = app.build()
    names = {d.api_name for d in blocks.fns.values() if d.api_name}
    assert {"compare", "trajectory", "sweep"} <= names


def test_compare_handler_returns_every_method(explorer):
    *galleries, summary, download, base = drain(app.on_compare(*SETTINGS.values()))
    assert len(galleries) == len(METHODS)
    for gallery in galleries:
        assert len(gallery) == 4
        path, caption = gallery[0]
        with Image.open(path) as image:
            assert image.size == (112, 112) and image.format == "PNG"
        assert caption[0] in "✓✗" and "%" in caption
    assert all(m in summary for m in ("Unguided", "Autoguidance")) and Path(download).suffix == ".png"
    with Image.open(download) as grid:
        assert grid.width > 4 * 56
    strip, gif, p_plot, norm_plot = app.on_trajectory(base, 2)
    with Image.open(strip) as image:
        assert image.height > 10 * 56
    assert Path(gif).read_bytes()[:6] == b"GIF89a"
    assert p_plot.axes and norm_plot.axes


def test_changing_only_w_reuses_the_unguided_run_and_views_recompute_nothing(explorer):
    drain(app.on_compare(*SETTINGS.values()))
    before = explorer.runs_computed
    drain(app.on_compare(*{**SETTINGS, "weight": 3.5}.values()))
    assert explorer.runs_computed == before + len(METHODS) - 1          # unguided came from the cache
    drain(app.on_compare(*{**SETTINGS, "weight": 0.0}.values()))
    assert explorer.runs_computed == before + len(METHODS) - 1          # w = 0: every method is the unguided run
    base = ex.parse_request(*{**SETTINGS, "weight": 3.5}.values())
    app.on_trajectory(base, 1)
    assert explorer.runs_computed == before + len(METHODS) - 1


def test_comparison_samples_all_methods_together_as_they_would_alone(explorer, models):
    """Lockstep batching is a speed-up only: each method's samples match its run alone (up to float rounding
    of the larger batch), and the same comparison twice is bitwise identical."""
    base = ex.parse_request(*SETTINGS.values())
    runs = ex.Explorer(models).compare(base).runs
    again = ex.Explorer(models).compare(base).runs
    for method, run in runs.items():
        assert torch.equal(run.samples, again[method].samples)
        (alone,) = ex.run_methods(models, [replace(base, method=method)])
        torch.testing.assert_close(run.samples, alone.samples, rtol=0, atol=2e-3)
        np.testing.assert_allclose(run.p_target, alone.p_target, atol=2e-3)


def test_long_runs_are_split_into_bounded_batches():
    base = ex.parse_request(*{**SETTINGS, "num_samples": 64}.values())
    requests = [replace(base, method=m, weight=w) for m in METHODS for w in (1.0, 2.0)]
    groups = ex.batches(requests, max_rows=512)
    assert [r for g in groups for r in g] == requests
    for group in groups:
        rows = sum(r.num_samples * GUIDANCE[r.method].nfe_per_step for r in group)
        assert rows <= 512 or len(group) == 1


@pytest.mark.parametrize("field,value,message", [
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
def test_bad_input_gets_a_clear_message(explorer, field, value, message):
    settings = {**SETTINGS, field: value}
    if field == "sigma_lo":
        settings["sigma_hi"], message = 1.0, "high sigma must be a number >= the low sigma"
    with pytest.raises(gr.Error, match=message):
        drain(app.on_compare(*settings.values()))


def test_sweep_handler_draws_every_method_and_weight(explorer):
    before = explorer.runs_computed
    picture, figure = drain(app.on_sweep(3, 4, "ddim", 2, 0, 0.0, 80.0))
    guided = len(METHODS) - 1
    assert explorer.runs_computed - before <= guided * (len(ex.SWEEP_WEIGHTS) - 1) + 1   # w = 0 is shared
    with Image.open(picture) as image:
        assert image.height > guided * 56 and image.width > len(ex.SWEEP_WEIGHTS) * 2 * 56
    assert len(figure.axes[0].lines) == guided


def test_toy_handler_and_its_errors(explorer):
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


def test_summary_says_which_runs_came_from_the_cache(explorer):
    base = ex.parse_request(*{**SETTINGS, "seed": 77}.values())
    first = explorer.compare(base)
    assert "sampled together" in views.summary(first) and "from cache" not in views.summary(first)
    second = explorer.compare(replace(base, weight=4.0))            # unguided is reused
    assert "1 run from cache" in views.summary(second) and "4 runs sampled together" in views.summary(second)
    assert "5 runs from cache" in views.summary(explorer.compare(base))


def test_a_new_method_samples_alongside_the_shipped_ones(explorer, away_from_zero):
    base = ex.parse_request(*{**SETTINGS, "seed": 78}.values())
    results = explorer.compare(base, methods=(*METHODS, "away_from_zero"))
    assert list(results.runs) == [*METHODS, "away_from_zero"] and len(results.fresh_batches) == 1
    assert not torch.equal(results.runs["away_from_zero"].samples, results.runs["unguided"].samples)


def test_trajectory_without_a_comparison_is_a_clear_error(explorer):
    with pytest.raises(gr.Error, match="Generate a comparison first"):
        app.on_trajectory(None, 0)


# ---- the real server -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_gradio_client_gets_every_gallery(server):
    from gradio_client import Client
    client = Client(server, verbose=False)
    result = client.predict(3, 2.0, 8, "ddim", 3, 5, 0.0, 80.0, api_name="/compare")
    galleries, (summary, download) = result[:len(METHODS)], result[len(METHODS):]    # State is not sent
    assert len(result) == len(METHODS) + 2 and "Autoguidance" in summary and download.endswith(".png")
    for gallery in galleries:
        assert len(gallery) == 3 and all(Path(item["image"]).suffix == ".png" for item in gallery)
        assert all(item["caption"][0] in "✓✗" for item in gallery)
    with pytest.raises(Exception, match="1000"):          # Gradio's own range check, or ours
        client.predict(3, 2.0, 5000, "ddim", 3, 5, 0.0, 80.0, api_name="/compare")
    with pytest.raises(Exception, match="high sigma must be a number >= the low sigma"):
        client.predict(3, 2.0, 8, "ddim", 3, 5, 5.0, 1.0, api_name="/compare")
    # the server is still healthy after bad input
    assert len(client.predict(4, 1.0, 4, "ddim", 2, 0, 0.0, 80.0, api_name="/compare")[0]) == 2


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_browser_generates_and_shows_every_gallery(server, tmp_path):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1500, "height": 1300})
        page.goto(server, wait_until="domcontentloaded")
        page.get_by_role("button", name="Generate").click()
        for method in METHODS:
            page.locator(f"#gallery-{method} img").first.wait_for(timeout=90_000)
        page.locator("#summary table").wait_for(timeout=90_000)
        page.locator("#filmstrip img").wait_for(timeout=90_000)
        page.screenshot(path=str(tmp_path / "screenshot.png"), full_page=True)
        assert page.locator(f"#gallery-{METHODS[-1]} img").count() >= 1
        browser.close()


def test_handlers_do_their_torch_work_on_the_one_compute_thread(explorer, monkeypatch):
    """demo/compute.py: a second thread running torch ops makes OpenMP stop spinning (measured 1.6x slower)."""
    import threading

    from demo.compute import COMPUTE
    seen = set()
    original = ex.run_methods_live

    def spy(*args, **kwargs):
        seen.add(threading.current_thread())
        return (yield from original(*args, **kwargs))
    monkeypatch.setattr(ex, "run_methods_live", spy)
    drain(app.on_compare(*{**SETTINGS, "seed": 99}.values()))
    assert seen == {COMPUTE.thread} and COMPUTE.thread is not threading.current_thread()
    assert COMPUTE.call(COMPUTE.call, threading.current_thread) is COMPUTE.thread        # re-entrant
