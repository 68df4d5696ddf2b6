"""Where a class's time goes, measured in the process that samples: seconds inside network calls, inside the
scheduler's steps, in rendering and in the forming previews, and each sampling ticket's wait and sampling time.

Installed by wrapping classes and module functions (`with timing.Clock().installed(): ...`) and removed after;
the app knows nothing of it. The bench uses it in process (the in-process class), and in the app's own process
through demo/tools/timed_app.py (the served class), which writes `snapshot()` to a file the bench reads.

    network    every denoiser and classifier forward, classifier guidance's backward (batching.classify) and the
               evaluation classifier of finished runs; nested calls are counted once (the outermost)
    steps      Scheduler.step: the network calls plus everything else a sampling step does (on the compute thread)
    work       the handlers' rendering and previews, by function (on the handler threads, beside the compute)
    tickets    per sampling ticket: submitted, first stepped and finished (seconds since the clock started)
    rows       the rows each network was given, by network and whether a gradient was taken (for the FLOPs)
"""
from __future__ import annotations

import contextlib
import functools
import threading
import time

import torch

from demo.engine import batching, networks
from demo.serving import outputs, recording
from demo.serving.scheduler import Scheduler
from demo.ui import picture, views

NETWORK = ((networks.Denoiser, "forward"), (networks.NoisyClassifier, "forward"),
           (networks.EvalClassifier, "forward"), (networks.EvalClassifier, "features"), (batching, "classify"))
RENDERING = ((picture, "comparison_html"), (picture, "ladder_payload"), (views, "summary"),
             (views, "comparison_grid"), (outputs, "save_file"))
PREVIEWS = ((picture, "forming_html"), (recording, "preview"))
_CLASSIFY = batching.classify           # classify(model, x, sigma, label, grad): the one call with a gradient


class Clock:
    """Seconds spent where a class's time goes (module docstring); thread-safe; `sync` waits for CUDA kernels
    at the end of every network call (only then is their time the network's)."""

    def __init__(self, sync: bool = False):
        self.sync, self.lock, self.local = sync, threading.Lock(), threading.local()
        self.origin = time.perf_counter()
        self.network, self.network_calls, self.steps, self.step_count = 0.0, 0, 0.0, 0
        self.work: dict[str, list] = {}                  # name -> [seconds, calls]
        self.tickets: dict[object, list] = {}            # ticket -> [submitted, started, finished, interactive]
        self.rows: dict[tuple, int] = {}                 # (network, gradient taken) -> rows it was given
        self.open: set = set()

    def now(self) -> float:
        return time.perf_counter() - self.origin

    def snapshot(self) -> dict:
        """Everything so far, as plain numbers (tickets in the order they were submitted)."""
        with self.lock:
            return {"network_seconds": self.network, "network_calls": self.network_calls,
                    "step_seconds": self.steps, "steps": self.step_count,
                    "work": {name: list(v) for name, v in self.work.items()},
                    "tickets": [list(t) for t in self.tickets.values()]}

    # ---- the wrappers ----

    def _network(self, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            if getattr(self.local, "inside", False):                 # a forward inside classify: counted there
                return fn(*args, **kwargs)
            self.local.inside, start = True, time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if self.sync:
                    torch.cuda.synchronize()
                self.local.inside = False
                grad = fn is _CLASSIFY and bool(args[4] if len(args) > 4 else kwargs.get("grad"))
                with self.lock:
                    self.network += time.perf_counter() - start
                    self.network_calls += 1
                    self.rows[(args[0], grad)] = self.rows.get((args[0], grad), 0) + len(args[1])
        return timed

    def _work(self, name: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                with self.lock:
                    entry = self.work.setdefault(name, [0.0, 0])
                    entry[0] += time.perf_counter() - start
                    entry[1] += 1
        return timed

    def _submit(self, fn):
        @functools.wraps(fn)
        def submit(scheduler, keys, background=False):
            submitted = self.now()
            ticket = fn(scheduler, keys, background)
            with self.lock:
                self.tickets[ticket] = [submitted, None, None, not background]
                self.open.add(ticket)
            return ticket
        return submit

    def _choose(self, fn):
        @functools.wraps(fn)
        def choose(scheduler):
            chosen = fn(scheduler)
            now = self.now()
            with self.lock:
                for job in chosen:
                    for ticket in job.tickets:
                        if ticket in self.tickets and self.tickets[ticket][1] is None:
                            self.tickets[ticket][1] = now
            return chosen
        return choose

    def _step(self, fn):
        @functools.wraps(fn)
        def step(scheduler):
            start = time.perf_counter()
            try:
                return fn(scheduler)
            finally:
                now = self.now()
                with self.lock:
                    self.steps += time.perf_counter() - start
                    self.step_count += 1
                    for ticket in [t for t in self.open if t.finished]:
                        self.tickets[ticket][2] = now
                        self.open.discard(ticket)
        return step

    @contextlib.contextmanager
    def installed(self):
        """The wrappers in place (on the classes and modules: every instance, every thread), then removed."""
        patches = [(owner, name, self._network(getattr(owner, name))) for owner, name in NETWORK]
        patches += [(owner, name, self._work(name, getattr(owner, name))) for owner, name in RENDERING + PREVIEWS]
        patches += [(Scheduler, "submit", self._submit(Scheduler.submit)),
                    (Scheduler, "choose", self._choose(Scheduler.choose)),
                    (Scheduler, "step", self._step(Scheduler.step))]
        originals = [(owner, name, owner.__dict__[name]) for owner, name, _ in patches]
        for owner, name, wrapper in patches:
            setattr(owner, name, wrapper)
        try:
            yield self
        finally:
            for owner, name, original in originals:
                setattr(owner, name, original)


def split(before: dict, after: dict, wall: float, latencies: list[float] | None = None) -> dict:
    """The time split of what ran between two snapshots (a class of `wall` seconds): on the compute thread,
    network calls, the rest of the sampling steps and idle; on the handler threads, rendering and previews;
    per interactive request, waiting (submitted to first step), sampling (first step to finished), rendering
    of the result and, given the clients' latencies, the rest (served: HTTP, Gradio's queue and events). Previews are
    drawn while the request waits and samples: they are not a part of its latency of their own."""
    network = after["network_seconds"] - before["network_seconds"]
    steps = after["step_seconds"] - before["step_seconds"]

    def work(names) -> tuple[float, int]:
        got = [[after["work"].get(n, [0, 0])[i] - before["work"].get(n, [0, 0])[i] for i in (0, 1)] for n in names]
        return sum(g[0] for g in got), sum(g[1] for g in got)
    rendering, renders = work([name for _, name in RENDERING])
    previews, preview_calls = work([name for _, name in PREVIEWS])
    tickets = [t for t in after["tickets"][len(before["tickets"]):] if t[3] and t[2] is not None and t[1] is not None]
    n = max(len(tickets), 1)
    out = {"wall_seconds": wall, "network_seconds": network, "network_fraction": network / wall if wall else 0.0,
           "network_calls": after["network_calls"] - before["network_calls"],
           "sampling_steps": after["steps"] - before["steps"],
           "sampler_outside_network_seconds": steps - network, "compute_idle_seconds": max(0.0, wall - steps),
           "rendering_seconds": rendering, "rendering_calls": renders,
           "previews_seconds": previews, "preview_calls": preview_calls,
           "requests_sampled": len(tickets),
           "per_request": {"waiting_seconds": sum(t[1] - t[0] for t in tickets) / n,
                           "sampling_seconds": sum(t[2] - t[1] for t in tickets) / n,
                           "rendering_seconds": rendering / n, "previews_seconds": previews / n}}
    if latencies:
        r = out["per_request"]
        r["latency_seconds"] = sum(latencies) / len(latencies)
        r["rest_seconds"] = max(0.0, r["latency_seconds"] - r["waiting_seconds"] - r["sampling_seconds"]
                                - r["rendering_seconds"])        # previews are drawn while it samples
    return out
