"""The bench's sections against the served app: `python app.py` on a free loopback port, started fresh for each
measurement (launcher.launch_app) with the bench's clock in its process (demo/tools/timed_app.py: the time
inside network calls, sampling steps, rendering and each request's wait, read from the app's own process).
Needs gradio (the bench skips these sections, saying so, where it is not installed). Every call goes over
Gradio's REST protocol (launcher.rest_call), light on the cores the app samples on.

    comparison alone over HTTP   /compare at the app's defaults, a new seed each time (nothing
                                 cached), one after another after a warm-up call; median
    a class                      every student presses Generate at once (classroom.classroom); p50/p95/max,
                                 wall time, errors, pictures against the same comparison made alone, and the
                                 time split: on the compute thread network / other sampling work / idle; per
                                 request waiting, sampling, rendering and the rest (HTTP, Gradio's queue)
    previews off                 the same class, the app started with --no-previews ('not supported' if the
                                 app refuses the flag)
"""
from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from demo.tools import classroom, launcher
from demo.tools.timed_app import read
from demo.tools.timing import split

NO_PREVIEWS = "--no-previews"
ALONE_SEEDS = 5000            # the lone comparisons' seeds: 5000, 5001, ... (cached by nothing before them)


def served(students: list[classroom.Student], reference: list | None, alone_repeats: int = 0,
           flags: Sequence[str] = (), run_class: bool = True, second_class: tuple | None = None) -> dict:
    """A fresh app (with `flags`): a warm-up call, `alone_repeats` lone comparisons, then the class; then, with
    `second_class` = (students, reference), that class through gradio_client ("class_gradio_client").
    {"alone": ..., "class": ...}, or {"error": ...} / {"skipped": ...} if the app did not start."""
    with tempfile.TemporaryDirectory(prefix="guidance_lab_bench_") as tmp:
        folder = Path(tmp)
        port = launcher.free_port()
        try:
            with launcher.launch_app(args=["--port", str(port), *flags], port=port,
                                     timing=folder / "timing.json") as (url, process):
                launcher.wait_for_lessons(process)         # a class meets a server done with its warm-up
                out = _measure(url, folder, students, reference, alone_repeats, run_class)
                if second_class is not None:
                    out["class_gradio_client"] = _class(url, folder, *second_class, via="gradio_client")
                return out
        except RuntimeError as error:
            message = str(error)
            if any(flag in message for flag in flags) and "did not start" in message:
                return {"skipped": f"not supported: app.py refused {' '.join(flags)} "
                                   f"({message.strip().splitlines()[-1][:200]})"}
            return {"error": message[-2000:]}


def _measure(url: str, folder: Path, students: list[classroom.Student], reference: list | None,
             alone_repeats: int, run_class: bool) -> dict:
    timing = folder / "timing.json"
    like = students[0]
    launcher.rest_call(url, classroom.Student(9, 10_000, like.weight, like.num_samples, like.num_steps).kwargs())
    out = {}
    if alone_repeats:
        before, latencies = read(timing), []
        for k in range(alone_repeats):
            began = time.perf_counter()
            launcher.rest_call(url, classroom.Student(3, ALONE_SEEDS + k, like.weight, like.num_samples,
                                                      like.num_steps).kwargs())
            latencies.append(time.perf_counter() - began)
        timed = split(before, read(timing), sum(latencies), latencies)
        out["alone"] = {"seconds": statistics.median(latencies), "min_seconds": min(latencies),
                        "max_seconds": max(latencies), "repeats": alone_repeats,
                        "network_fraction": timed["network_fraction"], "split": timed}
    if run_class:
        out["class"] = _class(url, folder, students, reference)
    return out


def _class(url: str, folder: Path, students: list[classroom.Student], reference: list | None,
           via: str = "rest") -> dict:
    """One class against the running app: latencies, errors, the time split and the pictures' equality."""
    before = read(folder / "timing.json")
    result = classroom.classroom(url, students, via=via)
    result["split"] = split(before, read(folder / "timing.json"), result["wall_seconds"], result["latencies"])
    pictures = result.pop("pictures")
    if reference is not None:
        result["equality"] = classroom.compare_pictures(pictures, reference)
    return {"via": via, **result}
