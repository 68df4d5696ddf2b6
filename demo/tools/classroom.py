"""A classroom against a real server: `python app.py` in a subprocess, N gradio_client clients pressing
Generate at the same moment, each result checked against the same comparison made alone.

Used by the bench (30 clients, numbers for the README) and by the test suite (fewer clients, equality and no
errors only: timing goals live in the bench). Traffic goes to 127.0.0.1 only.
"""
from __future__ import annotations

import base64
import concurrent.futures
import io
import math
import re
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from demo.tools import launcher

DIGIT = re.compile(r'<img src="data:image/png;base64,([^"]+)"')


@dataclass(frozen=True)
class Student:
    """One client's comparison: every method at the same w (the API's "same w" mode)."""
    label: int
    seed: int
    weight: float = 2.0
    num_samples: int = 8
    num_steps: int = 32

    def kwargs(self) -> dict:
        """/compare's named parameters (launcher.call sends them)."""
        return launcher.compare_kwargs(self.label, self.seed, self.weight, self.num_samples, self.num_steps)



def digits(comparison_html: str) -> np.ndarray:
    """The digits of a comparison picture, (methods x samples, 28, 28) uint8, in reading order."""
    return np.stack([np.asarray(Image.open(io.BytesIO(base64.b64decode(d)))) for d in DIGIT.findall(comparison_html)])


def alone(students: list[Student]) -> list[np.ndarray]:
    """Each student's comparison made alone, in this process (a fresh cache each): the reference."""
    from demo.engine.guidance import METHODS
    from demo.engine.pipeline import Models
    from demo.serving import service as svc
    from demo.ui import views
    models = Models.load()
    pictures = []
    for s in students:
        base, weights = svc.parse_settings(s.label, "same", s.weight, [s.weight] * len(METHODS[1:]), s.num_steps,
                                          "ddim", s.num_samples, s.seed, 0.0, 80.0)
        results = svc.Service(models).compare(base, METHODS, weights)
        pictures.append(digits(views.comparison_html(results.runs)))
    return pictures


def classroom(url: str, students: list[Student], folder: Path) -> dict:
    """Every student submits at the same moment; latency per student, wall time, errors and the pictures."""
    clients = [launcher.client(url, str(folder / f"client{k}")) for k in range(len(students))]
    start = threading.Barrier(len(students))
    t0 = [0.0]

    def one(k: int):
        start.wait()
        if k == 0:
            t0[0] = time.perf_counter()
        began = time.perf_counter()
        try:
            result = launcher.call(clients[k], students[k].kwargs())
            return time.perf_counter() - began, digits(result[0]), None
        except Exception as error:      # counted, not raised: the bench reports errors
            return time.perf_counter() - began, None, f"{type(error).__name__}: {error}"[:200]

    with concurrent.futures.ThreadPoolExecutor(len(students)) as pool:
        answers = list(pool.map(one, range(len(students)), timeout=1800))
    wall = max(t for t, _, _ in answers)
    latencies = sorted(t for t, _, _ in answers)
    return {"clients": len(students), "wall_seconds": wall, "latencies": latencies,
            "p50_seconds": statistics.median(latencies), "p95_seconds": float(np.percentile(latencies, 95)),
            "max_seconds": latencies[-1], "errors": [e for _, _, e in answers if e],
            "pictures": [p for _, p, _ in answers]}


LADDER_CHECKS = ("1.5", "0.5", "2", "1", "2.5")          # w values set in the browser once the ladder is ready


def view_latency(url: str, ladder_values: tuple[str, ...] = LADDER_CHECKS) -> dict:
    """What a visitor sees, in Debian's chromium at 1024x768: seconds from opening the page to a finished
    comparison, then until the w ladder is ready, then for each w change on the ladder until the picture shows
    it (the whole round trip: browser, Gradio, cache, rendering). No ladder_values: the first result only."""
    from playwright.sync_api import sync_playwright

    from demo.tools.screenshots import CHROMIUM_ARGS, chromium
    if chromium() is None:
        return {"error": "Debian's chromium is not installed"}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1024, "height": 768})
        began = time.perf_counter()
        page.goto(url, wait_until="domcontentloaded")
        page.locator("#comparison .gl-cell img").first.wait_for(timeout=120_000)
        first = time.perf_counter() - began
        if not ladder_values:
            browser.close()
            return {"first_result_seconds": first, "ladder_fill_seconds": math.nan, "w_change_seconds": math.nan,
                    "w_changes": []}
        page.locator("#ladder-status").get_by_text("ready").wait_for(timeout=600_000)
        ladder = time.perf_counter() - began - first
        box, changes = page.locator("#weight-cfg input[type=number]"), []
        for w in ladder_values:
            began = time.perf_counter()
            box.fill(w)
            box.press("Enter")
            page.locator(f'#comparison .gl-label:has-text("w = {w} ·")').first.wait_for(timeout=60_000)
            changes.append(time.perf_counter() - began)
        browser.close()
    return {"first_result_seconds": first, "ladder_fill_seconds": ladder,
            "w_change_seconds": statistics.median(changes), "w_changes": changes}


def compare_pictures(got: list[np.ndarray | None], want: list[np.ndarray]) -> dict:
    """How the served pictures differ from the ones made alone (float rounding of a larger batch can move a
    pixel by one grey level; anything more is a bug)."""
    diffs = [np.abs(g.astype(int) - w.astype(int)) for g, w in zip(got, want) if g is not None and g.shape == w.shape]
    return {"compared": len(diffs), "of": len(want),
            "identical_fraction": float(np.mean([(d == 0).mean() for d in diffs])) if diffs else 0.0,
            "max_grey_levels": int(max(d.max() for d in diffs)) if diffs else -1}


def report(clients: int = 30, num_samples: int = 8, num_steps: int = 32, weight: float = 2.0,
           peak_gflops: float | None = None, folder: Path | None = None,
           ladder_values: tuple[str, ...] = LADDER_CHECKS) -> dict:
    """The bench's classroom section: `clients` students (class k mod 10, seed k) at once against a fresh
    server; latency percentiles, throughput, the fraction of the FLOP floor, split of one request's time, and
    equality with the same comparison made alone. `ladder_values`: the w changes timed in the browser once the
    page's w ladder is ready (none: the first result only)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from demo.engine.guidance import METHODS
    from demo.engine.pipeline import Models
    from demo.serving import service as svc
    from demo.tools.benchmarks import device_name, flops_per_sample, matmul_peak
    from demo.ui import views
    students = [Student(k % 10, k, weight, num_samples, num_steps) for k in range(clients)]
    models = Models.load()
    peak = peak_gflops or matmul_peak(torch.device("cpu"), 5)
    base, weights = svc.parse_settings(0, "same", weight, [weight] * len(METHODS[1:]), num_steps, "ddim",
                                      num_samples, 0, 0.0, 80.0)
    requests = svc.comparison_requests(base, METHODS, weights)
    with FlopCounterMode(display=False) as counter:   # one comparison's FLOPs, counted by torch (in this thread:
        svc.run_methods(models, [r for r in requests if r.method != "classifier"])   # modes are thread-local)
    gradient = [r for r in requests if r.method == "classifier"]   # autograd.grad cannot run under the counter:
    per_student = counter.get_total_flops() + sum(                 # forward D + classifier, backward ~2x forward
        r.num_samples * r.sampler.num_steps * (flops_per_sample(models.net) + 3 * flops_per_sample(
            models.classifier, classifier=True)) for r in gradient)
    floor = clients * per_student / (peak * 1e9)
    with tempfile.TemporaryDirectory() as tmp:
        folder = folder or Path(tmp)
        with launcher.launch_app() as (url, process):
            probe = launcher.client(url, str(folder / "probe"))
            view = view_latency(url, ladder_values)                      # one visitor on a quiet server
            launcher.call(probe, Student(9, 10_000, weight, num_samples, num_steps).kwargs())  # warm
            served = classroom(url, students, folder)
            cached = []                                   # a cached request: rendering + Gradio, no sampling
            for _ in range(5):
                began = time.perf_counter()
                launcher.call(probe, students[0].kwargs())
                cached.append(time.perf_counter() - began)
    service = svc.Service(models)
    began = time.perf_counter()
    results = service.compare(base, METHODS, weights)
    sampling = time.perf_counter() - began
    began = time.perf_counter()
    views.comparison_html(results.runs), views.summary(results), views.comparison_grid(results)
    rendering = time.perf_counter() - began
    match = compare_pictures(served.pop("pictures"), alone(students))
    served.pop("latencies")
    round_trip = statistics.median(cached)
    return {**served, "students": f"class k mod 10, seed k, {num_samples} samples x {num_steps} DDIM steps, "
                                  f"w = {weight:g}, {len(METHODS)} methods",
            "throughput_per_second": clients / served["wall_seconds"],
            "flop_floor_seconds": floor, "fraction_of_flop_floor": floor / served["wall_seconds"],
            "matmul_peak_gflops": peak, "device": device_name(torch.device("cpu")),
            "one_request": {"sampling_seconds": sampling, "rendering_seconds": rendering,
                            "gradio_seconds": max(0.0, round_trip - rendering), "cached_round_trip_seconds": round_trip},
            "equality": match, "view": view}
