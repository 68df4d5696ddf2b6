"""The Compare tab's forming picture: while a comparison samples, each tile shows its sample's current x0
estimate (or x_t), paced so that a class's previews do not slow its sampling."""
from __future__ import annotations

import contextlib
import threading
import time

import gradio as gr

from demo.engine.guidance import METHODS
from demo.serving import recording
from demo.serving import service as svc
from demo.ui import picture
from demo.ui.common import Runtime

PREVIEW_EVERY = 0.4       # seconds between forming pictures (at least twice a second)
PREVIEWS_PER_SECOND = 2.0  # forming pictures per second for all visitors together (the 2 cores sample meanwhile)


class Pace:
    """How often a forming picture is sent: every PREVIEW_EVERY s while few visitors' comparisons form, less
    often when many do, so that all of them together send at most PREVIEWS_PER_SECOND (each preview is drawn,
    encoded and sent by Gradio on the same cores that sample: the bench's class of 30, previews on against off)."""
    lock, forming = threading.Lock(), 0

    def __enter__(self):
        with Pace.lock:
            Pace.forming += 1
        return self

    def __exit__(self, *_):
        with Pace.lock:
            Pace.forming -= 1

    @staticmethod
    def every() -> float:
        return max(PREVIEW_EVERY, Pace.forming / PREVIEWS_PER_SECOND)


def forming(live, service: svc.Service, base, weights: dict[str, float], what: str):
    """Drive the comparison, showing it form: every Pace.every() s (PREVIEW_EVERY for one visitor) each tile
    shows its sample's current x0 estimate (or x_t), a run from the cache its final sample, and only when a step
    has advanced since the last picture; before anything starts, the place in line, when it changes. The
    estimates are the ones the sampler computes anyway: nothing is sampled for them."""
    keys = {m: svc.cache_key(r) for m, r in zip(METHODS, svc.comparison_requests(base, METHODS, weights))}
    weights = {"unguided": 0.0, **weights}
    last, said, shown_steps, paced = time.perf_counter(), None, None, False
    with contextlib.ExitStack() as counted:
        for done, total in live:
            if time.perf_counter() - last < (Pace.every() if paced else PREVIEW_EVERY):
                continue
            last = time.perf_counter()
            if not Runtime.previews or live.watch is None:
                yield gr.skip(), gr.skip(), f"Sampling every method together: {done / max(total, 1):.0%}", gr.skip()
                continue
            ahead = live.watch.ahead()
            if ahead:
                if ahead != said:
                    said = ahead
                    yield (gr.skip(), gr.skip(),
                           f"Waiting in line: {ahead} comparison{'s' * (ahead > 1)} ahead of yours", gr.skip())
                continue
            steps = live.watch.previews()
            now = tuple(sorted(s.index for s in steps.values()))
            if not steps or now == shown_steps:    # nothing (new) to show
                continue
            shown_steps = now
            if not paced:                          # sampling has begun: count this visitor among those forming
                counted.enter_context(Pace())
                paced = True
            yield _forming_picture(service, base, weights, keys, steps, what, done, total)


def _forming_picture(service: svc.Service, base, weights: dict, keys: dict, steps: dict, what: str, done: int,
                     total: int) -> tuple:
    """One forming picture: each method's last step (or its cached final sample), and the status line."""
    shown_now = {}
    for method, key in keys.items():
        if key in steps:
            index, sigma, x0, xt = recording.preview(steps[key])
            shown_now[method] = (index, sigma, x0 if what == "x0" else xt)
        elif (run := service.cached(key)) is not None:
            shown_now[method] = (base.sampler.num_steps, 0.0, run.pixels)
    html_now = picture.forming_html(list(keys), weights, shown_now, base.sampler.num_steps, base.num_samples,
                                    "x0 estimate" if what == "x0" else "noisy state x_t")
    return html_now, gr.skip(), f"Forming: {done / max(total, 1):.0%} of the steps done", gr.skip()
