"""A classroom against a real server: N students pressing Generate at the same moment, each result checked
against the same comparison made alone. Each student is a thread calling /compare over Gradio's REST protocol
(launcher.rest_call), which costs the machine little, as a browser on a student's own machine costs the server
nothing: thirty gradio_client instances on the server's two cores inflated the latencies they measured (a class
of 30 cached comparisons: p50 2.9 s with them, 1.1 s with REST calls).

Used by the bench (a class of 30, numbers for the README: demo/tools/bench_served.py) and by the test suite (fewer
clients, equality and no errors only: timing goals live in the bench). Traffic goes to 127.0.0.1 only.
"""
from __future__ import annotations

import base64
import concurrent.futures
import io
import re
import statistics
import threading
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image

from demo.tools import launcher

DIGIT = re.compile(r'<img src="data:image/png;base64,([^"]+)"')


@dataclass(frozen=True)
class Student:
    """One client's comparison: the app's defaults (read when asked: demo/ui/form.py) but for the class and seed;
    `weight` puts every method at that w (the "same w" mode), None keeps each method at its own default w;
    None samples or steps: the app's defaults."""
    label: int
    seed: int
    weight: float | None = None
    num_samples: int | None = None
    num_steps: int | None = None

    def kwargs(self) -> dict:
        """/compare's named parameters (launcher.call sends them)."""
        from demo.ui.form import GUIDED, weight_name
        changes = {"label": self.label, "seed": self.seed}
        if self.weight is not None:
            changes.update(mode="same", weight=self.weight, **{weight_name(m): self.weight for m in GUIDED})
        if self.num_samples is not None:
            changes["num_samples"] = self.num_samples
        if self.num_steps is not None:
            changes["num_steps"] = self.num_steps
        return launcher.defaults(**changes)

    def comparison(self):
        """(base request, w per guided method): what the app samples for it (form.comparison)."""
        from demo.ui import form
        return form.comparison(form.COMPARE.check(self.kwargs()))


def class_of(clients: int, num_samples: int | None = None, num_steps: int | None = None,
             first_seed: int = 1000) -> list[Student]:
    """The bench's class: student k asks for digit k mod 10 with seed 1000 + k (first_seed + k), the app's
    defaults otherwise."""
    return [Student(k % 10, first_seed + k, None, num_samples, num_steps) for k in range(clients)]


def digits(comparison_html: str) -> np.ndarray:
    """The digits of a comparison picture, (methods x samples, 28, 28) uint8, in reading order."""
    return np.stack([np.asarray(Image.open(io.BytesIO(base64.b64decode(d)))) for d in DIGIT.findall(comparison_html)])


def alone(students: list[Student], models=None) -> list[np.ndarray]:
    """Each student's comparison made alone, in this process (a fresh cache each): the reference."""
    from demo.engine.guidance import METHODS
    from demo.engine.pipeline import Models
    from demo.serving import service as svc
    from demo.ui import picture
    models = models or Models.load()
    pictures = []
    for s in students:
        base, weights = s.comparison()
        results = svc.Service(models).compare(base, METHODS, weights)
        pictures.append(digits(picture.comparison_html(results.runs)))
    return pictures


def classroom(url: str, students: list[Student], pressed: threading.Event | None = None,
              via: str = "rest") -> dict:
    """Every student submits at the same moment (`pressed` is set then); latency per student, wall time, errors
    and the pictures. `via` "gradio_client": each student a gradio_client Client (made before the moment),
    as the issue's acceptance asks; heavier on this machine's cores than the REST calls."""
    start = threading.Barrier(len(students), action=pressed.set if pressed is not None else None)
    clients = [launcher.client(url) for _ in students] if via == "gradio_client" else None

    def one(k: int):
        start.wait()
        began = time.perf_counter()
        try:
            result = launcher.rest_call(url, students[k].kwargs()) if clients is None else \
                launcher.call(clients[k], students[k].kwargs())
            return began, time.perf_counter(), digits(result[0]), None
        except Exception as error:      # counted, not raised: the bench reports errors
            return began, time.perf_counter(), None, f"{type(error).__name__}: {error}"[:200]

    with concurrent.futures.ThreadPoolExecutor(len(students)) as pool:
        answers = list(pool.map(one, range(len(students)), timeout=1800))
    return latency_report(answers)


def latency_report(answers: list[tuple[float, float, np.ndarray | None, str | None]]) -> dict:
    """(began, ended, picture, error) per student -> latency percentiles, wall time, errors and the pictures."""
    latencies = sorted(end - began for began, end, _, _ in answers)
    wall = max(end for _, end, _, _ in answers) - min(began for began, _, _, _ in answers)
    return {"clients": len(answers), "wall_seconds": wall, "latencies": latencies,
            "p50_seconds": statistics.median(latencies), "p95_seconds": float(np.percentile(latencies, 95)),
            "max_seconds": latencies[-1], "errors": [e for _, _, _, e in answers if e],
            "pictures": [p for _, _, p, _ in answers]}


def compare_pictures(got: list[np.ndarray | None], want: list[np.ndarray]) -> dict:
    """How the served pictures differ from the ones made alone (float rounding of a larger batch can move a
    pixel by one grey level; anything more is a bug)."""
    diffs = [np.abs(g.astype(int) - w.astype(int)) for g, w in zip(got, want) if g is not None and g.shape == w.shape]
    return {"compared": len(diffs), "of": len(want),
            "identical_fraction": float(np.mean([(d == 0).mean() for d in diffs])) if diffs else 0.0,
            "max_grey_levels": int(max(d.max() for d in diffs)) if diffs else -1,
            "identical": len(diffs) == len(want) and all(int(d.max()) == 0 for d in diffs)}
