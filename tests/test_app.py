"""The Gradio app: handlers called directly, the server driven over HTTP and in a real browser."""
from __future__ import annotations

import html
import json
import re
from dataclasses import replace
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

import app
from demo.engine.guidance import GUIDANCE, METHODS
from demo.science import findings
from demo.serving import service as svc
from demo.toy import lab as toy_lab
from demo.ui import compare_tab, form, sweep_tab, toy_tab, views
from demo.ui.common import Runtime

GUIDED = METHODS[1:]

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = dict(label=3, mode="same", weight=2.0, w_classifier=3.0, w_cfg=1.0, w_gfcg=3.0, w_autoguidance=0.5,
                w_gfcg_ag=1.0, guide="default", num_steps=12, sampler="ddim", num_samples=4, seed=1, sigma_lo=0.0,
                sigma_hi=80.0)


def values(follow: int = 0, **changes) -> dict:
    """The /compare and /trajectory keyword arguments (the UI's hidden `follow` included)."""
    return {**SETTINGS, **changes, "follow": follow}


def base(**changes):
    """The comparison's base request (at SETTINGS' w = 2)."""
    v = form.COMPARE.check({**SETTINGS, **changes})
    return form.base_request(v, weight=v.weight)


@pytest.fixture(scope="module")
def service(models):
    Runtime.service = svc.Service(models)
    yield Runtime.service
    Runtime.service = None


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
    picture, summary, status, download = drain(compare_tab.on_compare(**values()))
    assert picture.count('class="gl-row"') == len(METHODS)                 # one row per method
    assert picture.count("data-sample=") == len(METHODS) * 4               # a cell per sample
    assert all(GUIDANCE[m].short_title in picture for m in METHODS) and "data:image/png;base64," in picture
    assert all(GUIDANCE[m].short_title in summary for m in METHODS) and "| w |" in summary
    assert "digit 3" in status and Path(download).suffix == ".png"
    with Image.open(download) as grid:
        assert grid.width > 4 * 56
    filmstrip, gif, plots = drain(compare_tab.on_trajectory(**values(follow=2)))
    assert filmstrip.count('class="gl-frame"') == len(METHODS) * 2 * 10 and "σ" in filmstrip
    assert Path(gif).read_bytes()[:6] == b"GIF89a"
    assert len(plots.axes) == 2


def test_each_method_at_its_own_w(service):
    picture, summary, status, _ = drain(compare_tab.on_compare(**values(mode="own", w_autoguidance=3.0, w_gfcg_ag=10.0)))
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in summary.splitlines()[2:8]}
    assert rows == {"Unguided": "–", "Classifier": "3", "Classifier-free": "1", "Gradient-free": "3",
                    "Autoguidance": "3", "GFCG + AG": "10"}
    assert "w per method" in status
    assert "Autoguidance with this guide at w = 3 is past" not in picture       # the recommended guide holds at 3


def test_the_guide_changes_autoguidance_and_its_measured_range(service):
    default = drain(compare_tab.on_compare(**values(mode="own", w_autoguidance=3.0)))
    early = drain(compare_tab.on_compare(**values(mode="own", w_autoguidance=3.0, guide="collapses_early")))
    measured = findings.method_range("autoguidance", "collapses_early")   # the stored evaluation's rows
    assert 1 < measured.degrades_beyond < 3 < findings.method_range("autoguidance").degrades_beyond
    assert f"Autoguidance with this guide at w = 3 is past w ≈ {measured.degrades_beyond:.2g}" in early[0]
    assert "Autoguidance with this guide" not in default[0]
    assert early[0] != default[0]
    captions = compare_tab.on_guide("collapses_early")
    assert (f"best FID at {measured.best_weight:g}; degrades beyond ≈ {measured.degrades_beyond:.2g}"
            == captions[GUIDED.index("autoguidance")]["info"])
    with pytest.raises(gr.Error, match=r"guide \(guide\) must be one of default, collapses_early, mild"):
        drain(compare_tab.on_compare(**values(guide="nope")))


def test_changing_only_w_reuses_the_unguided_run_and_views_recompute_nothing(service):
    drain(compare_tab.on_compare(**values()))
    before = service.runs_computed
    drain(compare_tab.on_compare(**values(weight=3.5)))
    assert service.runs_computed == before + len(METHODS) - 1          # unguided came from the cache
    drain(compare_tab.on_compare(**values(weight=0.0)))
    assert service.runs_computed == before + len(METHODS) - 1          # w = 0: every method is the unguided run
    drain(compare_tab.on_trajectory(**values(follow=1, weight=3.5)))
    assert service.runs_computed == before + len(METHODS) - 1


def test_the_w_ladder_makes_moving_w_instant(service):
    settings = values(seed=31)
    status, payload = drain(compare_tab.on_ladder(**settings))
    assert "ready" in status
    ladder = json.loads(html.unescape(re.search(r'data-ladder="([^"]*)"', payload).group(1)))
    picture = drain(compare_tab.on_compare(**settings))[0]
    assert f'data-key="{ladder["key"]}"' in picture.replace("&#x27;", "'")     # the page matches them by key
    assert set(ladder["rows"]) == set(GUIDED) and all(set(rows) == {f"{w:g}" for w in svc.LADDER}
                                                      for rows in ladder["rows"].values())
    assert 'data-method="cfg" data-w="2"' in ladder["rows"]["cfg"]["2"] and "w = 2 ·" in ladder["rows"]["cfg"]["2"]
    before = service.runs_computed
    for w in svc.LADDER:
        picture, *_ = drain(compare_tab.on_compare(**values(seed=31, weight=w)))
        assert f"w = {w:g}" in picture or w == 0
    assert service.runs_computed == before                               # not one run sampled
    drain(compare_tab.on_compare(**values(seed=31, weight=2.25)))                  # between ladder values: sampled
    assert service.runs_computed == before + len(METHODS) - 1
    assert "ready" in drain(compare_tab.on_ladder(**settings))[0] and service.runs_computed == before + len(METHODS) - 1


def test_comparison_samples_all_methods_together_as_they_would_alone(service, models):
    """Lockstep batching is a speed-up only: each method's samples match its run alone (up to float rounding
    of the larger batch), and the same comparison twice is bitwise identical."""
    request = base(weight=2.0)
    runs = svc.Service(models).compare(request).runs
    again = svc.Service(models).compare(request).runs
    for method, run in runs.items():
        assert torch.equal(run.samples, again[method].samples)
        (alone,) = svc.run_methods(models, [replace(request, method=method)])
        torch.testing.assert_close(run.samples, alone.samples, rtol=0, atol=2e-3)
        np.testing.assert_allclose(run.p_target, alone.p_target, atol=2e-3)


@pytest.mark.parametrize("field,value,message", [
    ("mode", "both", r"Guidance weight mode \(mode\) must be one of same, own; got 'both'"),
    ("w_cfg", -1.0, r"w · Classifier-free \(w_cfg\) must be between 0 and 10, got -1"),
    ("label", 10, r"Digit \(label\) must be between 0 and 9, got 10"),
    ("label", -1, r"Digit \(label\) must be between 0 and 9"),
    ("weight", -0.5, r"w \(all methods\) \(weight\) must be between 0 and 10"),
    ("weight", 10.5, r"\(weight\) must be between 0 and 10, got 10.5"),
    ("weight", float("inf"), r"\(weight\) must be finite"),
    ("weight", "abc", r"\(weight\) must be a number, got 'abc'"),
    ("num_steps", 0, r"Steps \(num_steps\) must be between 1 and 1000"),
    ("num_steps", 1001, r"Steps \(num_steps\) must be between 1 and 1000"),
    ("num_steps", 10.5, r"Steps \(num_steps\) must be a whole number, got 10.5"),
    ("num_steps", "32", r"Steps \(num_steps\) must be a number, got '32'"),
    ("seed", 1.5, r"Seed \(seed\) must be a whole number, got 1.5"),
    ("seed", "lucky", r"Seed \(seed\) must be a number"),
    ("seed", True, r"Seed \(seed\) must be a number"),
    ("label", [3], r"Digit \(label\) must be a number"),
    ("weight", None, r"\(weight\) must be a number"),
    ("seed", -3, r"Seed \(seed\) must be between"),
    ("num_samples", 65, r"Samples per method \(num_samples\) must be between 1 and 64"),
    ("sampler", "euler", r"Sampler \(sampler\) must be one of ddim, ancestral, dpmpp_2m"),
    ("guide", "nope", r"guide \(guide\) must be one of default"),
    ("sigma_lo", 5.0, r"high sigma must be a number >= the low sigma \(5\)"),
])
def test_bad_input_gets_a_clear_message_naming_the_field(service, field, value, message):
    settings = {field: value, "mode": "own"} if field.startswith("w_") else {field: value}
    if field == "sigma_lo":
        settings["sigma_hi"] = 1.0
    with pytest.raises(gr.Error, match=message):
        drain(compare_tab.on_compare(**values(**settings)))


def test_unknown_parameters_are_refused_by_name(service):
    with pytest.raises(gr.Error, match=r"/compare has no parameter 'colour'"):
        drain(compare_tab.on_compare(**values(colour="red")))


def test_sweep_handler_draws_every_method_and_weight(service):
    before = service.runs_computed
    picture, figure = drain(sweep_tab.on_sweep(label=3, num_steps=4, num_samples=2, seed=0, sample=2))
    guided = len(METHODS) - 1
    assert service.runs_computed - before <= guided * (len(svc.SWEEP_WEIGHTS) - 1) + 1   # w = 0 is shared
    assert picture.count('class="gl-frame') == guided * len(svc.SWEEP_WEIGHTS)   # one sample: fits one screen
    assert "digit 3" in picture and "seed 0" in picture and "sample 2" in picture    # it says what it shows
    assert "w = 0," not in picture and "w = 0 ·" not in picture           # and no w it did not use
    assert picture.count("sample 2, ") == guided * len(svc.SWEEP_WEIGHTS)  # every tile says what it is
    assert len(figure.axes[0].lines) == guided


def test_toy_handler_and_its_errors(service):
    toy = dict(preset="three classes, overlapping", label=1, weight=2.0, num_steps=20, num_samples=100, seed=0,
               show_field=True, field_step=10)
    figure, table = drain(toy_tab.on_toy(**toy))
    assert len(figure.axes) == len(METHODS) and "exact tilted" in table and "sampled in" in table
    _, again = drain(toy_tab.on_toy(**toy))
    assert "from cache" in again                                  # a cached result is not timed as new
    with pytest.raises(gr.Error, match="class must be between 0 and 2"):     # the API can still send it
        drain(toy_tab.on_toy(**{**toy, "label": 3}))
    with pytest.raises(gr.Error, match=r"Mixture \(preset\) must be one of"):
        drain(toy_tab.on_toy(**{**toy, "preset": "nope"}))
    with pytest.raises(gr.Error, match=r"\(field_step\) must be a number, got nan|\(field_step\) must be finite"):
        drain(toy_tab.on_toy(**{**toy, "field_step": float("nan")}))
    with pytest.raises(gr.Error, match=r"\(show_field\) must be true or false, got 'yes'"):
        drain(toy_tab.on_toy(**{**toy, "show_field": "yes"}))


@pytest.mark.parametrize("preset", list(toy_lab.PRESETS))
def test_toy_class_picker_follows_the_mixture(preset):
    radio = toy_tab.on_preset(preset, 3)
    assert radio.choices == [(str(c), c) for c in range(toy_lab.PRESETS[preset]().num_classes)]
    assert radio.value in range(toy_lab.PRESETS[preset]().num_classes)


def test_stop_buttons_cancel_every_long_run():
    """Stop ends a comparison, a sweep and a 2-D lab run (each tab has its own Stop)."""
    fns = app.build().fns.values()
    cancelled = {fn.name for stop in fns for index in stop.cancels for fn in fns if fn._id == index}
    assert {"on_compare", "on_sweep", "on_toy"} <= cancelled


def test_summary_says_which_runs_came_from_the_cache(service):
    request = base(seed=77)
    first = service.compare(request)
    assert "sampled together" in views.summary(first) and "from cache" not in views.summary(first)
    second = service.compare(replace(request, weight=4.0))            # unguided is reused
    guided = len(METHODS) - 1
    assert "1 run from cache" in views.summary(second) and f"{guided} runs sampled together" in views.summary(second)
    assert f"{len(METHODS)} runs from cache" in views.summary(service.compare(request))


def test_a_new_method_samples_alongside_the_shipped_ones(service, away_from_zero):
    results = service.compare(base(seed=78), methods=(*METHODS, "away_from_zero"))
    assert list(results.runs) == [*METHODS, "away_from_zero"] and len(results.fresh_batches) == 1
    assert not torch.equal(results.runs["away_from_zero"].samples, results.runs["unguided"].samples)


def test_trajectory_of_a_run_this_process_never_sampled_is_recomputed(models, monkeypatch):
    """No endpoint depends on what one process remembers: the same settings give the same bytes."""
    monkeypatch.setattr(Runtime, "service", svc.Service(models))
    first = drain(compare_tab.on_trajectory(**values(seed=55, follow=1)))
    monkeypatch.setattr(Runtime, "service", svc.Service(models))           # a fresh process, as it were
    second = drain(compare_tab.on_trajectory(**values(seed=55, follow=1)))
    assert first[0] == second[0] and Path(first[1]).read_bytes() == Path(second[1]).read_bytes()


def test_picking_a_digit_follows_it():
    class Event:
        _data = {"sample": 5}
    assert compare_tab.on_pick(0, Event()) == 5
    assert compare_tab.on_pick(3, type("Empty", (), {"_data": None})()) == 3


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
    drain(compare_tab.on_compare(**values(seed=99)))
    assert seen == {COMPUTE.thread} and COMPUTE.thread is not threading.current_thread()
    assert COMPUTE.call(COMPUTE.call, threading.current_thread) is COMPUTE.thread        # re-entrant
