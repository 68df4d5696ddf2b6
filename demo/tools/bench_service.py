"""The bench's in-process sections: no server, no gradio (they run on the lent GPU machine as on the CPU).

    comparison alone   what Generate computes and draws, from an empty cache: Service(models).compare (a fresh
                       Service each time, so nothing is cached), then the picture, the summary and the grid PNG
                       (written as the app writes it); medians of `repeats` after a warm-up; one more run under
                       the clock (demo/tools/timing.py) for the share of its time in network calls
    class in process   a class (every student at once) as threads calling one Service: the scheduler's
                       continuous batching without HTTP; latencies, wall time, the time split, and every
                       picture against the same comparison made alone
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import statistics
import tempfile
import threading
import time
from pathlib import Path

from demo.engine.guidance import METHODS
from demo.engine.pipeline import Models, Request
from demo.serving import outputs
from demo.serving import service as svc
from demo.tools import classroom
from demo.tools.timing import Clock, split
from demo.ui import picture, views


def synchronize(models: Models) -> None:
    if models.device.type == "cuda":
        import torch
        torch.cuda.synchronize(models.device)


def render(service: svc.Service, results: svc.Results, base: Request, folder: Path) -> str:
    """What the Compare handler draws from finished results: the picture, the summary, the grid PNG (saved)."""
    html = picture.comparison_html(results.runs, 0, "", service.runs_computed, base)
    views.summary(results)
    outputs.save_file(views.comparison_grid(results), folder, "comparison.png")
    return html


def one_comparison(models: Models, base: Request, weights: dict[str, float], folder: Path) -> tuple[float, float]:
    """(sampling seconds, rendering seconds) of one comparison from an empty cache."""
    service = svc.Service(models)
    began = time.perf_counter()
    results = service.compare(base, METHODS, weights)
    synchronize(models)
    sampled = time.perf_counter()
    render(service, results, base, folder)
    return sampled - began, time.perf_counter() - sampled


def alone_section(models: Models, base: Request, weights: dict[str, float], repeats: int) -> dict:
    """One comparison alone, in process (module docstring)."""
    with tempfile.TemporaryDirectory(prefix="guidance_lab_bench_") as tmp:
        one_comparison(models, base, weights, Path(tmp))                       # warm-up
        runs = [one_comparison(models, base, weights, Path(tmp)) for _ in range(repeats)]
        clock = Clock(sync=models.device.type == "cuda")
        with clock.installed():
            before = clock.snapshot()
            began = time.perf_counter()
            one_comparison(models, base, weights, Path(tmp))
            wall = time.perf_counter() - began
            timed = split(before, clock.snapshot(), wall)
    totals = [a + b for a, b in runs]
    return {"seconds": statistics.median(totals), "min_seconds": min(totals), "max_seconds": max(totals),
            "sampling_seconds": statistics.median(a for a, _ in runs),
            "rendering_seconds": statistics.median(b for _, b in runs), "repeats": repeats,
            "network_fraction": timed["network_fraction"], "split": timed}


def class_section(models: Models, students: list[classroom.Student], reference: list | None = None,
                  timed: bool = True) -> dict:
    """A class in process (module docstring): every student's thread starts at once (a barrier), asks one shared
    Service for its comparison and draws it. `timed`: under the clock (on CUDA it waits for every network
    call's kernels, which slows the class a little: run it once untimed for the latencies)."""
    with tempfile.TemporaryDirectory(prefix="guidance_lab_bench_") as tmp:
        return _class(models, students, reference, timed, Path(tmp))


def _class(models: Models, students: list[classroom.Student], reference: list | None, timed: bool,
           folder: Path) -> dict:
    service = svc.Service(models)
    start = threading.Barrier(len(students))

    def one(k: int):
        base, weights = students[k].comparison()
        start.wait()
        began = time.perf_counter()
        try:
            results = service.compare(base, METHODS, weights)
            html = render(service, results, base, folder)
            return began, time.perf_counter(), classroom.digits(html), None
        except Exception as error:                  # counted, not raised: the bench reports errors
            return began, time.perf_counter(), None, f"{type(error).__name__}: {error}"[:200]

    clock = Clock(sync=models.device.type == "cuda")
    with clock.installed() if timed else contextlib.nullcontext(), \
            concurrent.futures.ThreadPoolExecutor(len(students)) as pool:
        before = clock.snapshot()
        answers = list(pool.map(one, range(len(students)), timeout=1800))
        after = clock.snapshot()
    out = classroom.latency_report(answers)
    pictures = out.pop("pictures")
    if timed:
        out["split"] = split(before, after, out["wall_seconds"], out["latencies"])
    if reference is not None:
        out["equality"] = classroom.compare_pictures(pictures, reference)
    return out
