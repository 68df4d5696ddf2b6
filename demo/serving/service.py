"""The service behind the app: comparisons and sweeps of requests, answered from an LRU cache of finished runs
where possible and otherwise sampled by the scheduler, batched with every other visitor's; the per-request
budget. The UI (demo/ui) turns widget values into requests (form.py) and draws the results (views.py).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace

from demo.engine.config import GUIDES, Interval
from demo.engine.guidance import METHODS, uses_guide
from demo.engine.pipeline import Models, Request
from demo.engine.validation import RequestError
from demo.serving.recording import (  # noqa: F401 (API)
    NUM_FRAMES,
    FinishedRun,
    Live,
    Progress,
    run_methods,
    run_methods_live,
)
from demo.serving.scheduler import MAX_ROWS, Scheduler

SWEEP_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
LADDER = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)   # sampled ahead: instant w
CACHE_BYTES = 400 * 2**20  # finished runs kept (a run of 8 samples x 32 steps with its trajectory: ~0.5 MB)
BUDGET = 8.0               # what one request may cost, in default comparisons (operator setting: --budget)


def cache_key(request: Request) -> Request:
    """Runs that must give identical samples share a key: w = 0 (or 'unguided') ignores method, interval and
    guide; a method without a guide ignores the guide."""
    if request.weight == 0 or request.method == "unguided":
        return replace(request, method="unguided", weight=0.0, interval=Interval(), guide=GUIDES[0].key)
    if not uses_guide(request.method):
        return replace(request, guide=GUIDES[0].key)
    return request


@dataclass(frozen=True)
class Results:
    """Runs of one request of the app, keyed by method (comparison) or (method, w) (sweep)."""
    base: Request
    runs: dict
    fresh_batches: frozenset[int]    # batches sampled for this request; the other runs came from the cache


def comparison_requests(base: Request, methods: Sequence[str] = METHODS,
                        weights: dict[str, float] | None = None) -> list[Request]:
    """One request per method: the base's settings, at the method's own w if `weights` gives one."""
    return [replace(base, method=m, weight=(weights or {}).get(m, base.weight)) for m in methods]


def cost(requests: Sequence[Request]) -> int:
    """Denoiser rows x steps of these runs (identical runs counted once): what they cost to sample."""
    return sum(r.nfe * r.num_samples for r in dict.fromkeys(cache_key(r) for r in requests))


REFERENCE_COST = cost(comparison_requests(Request(label=0, weight=1.0, num_samples=8), METHODS))  # the default
                                                                       # comparison: 8 samples x 32 steps


def check_budget(requests: Sequence[Request], budget: float, what: str) -> None:
    """RequestError, before anything is sampled, if the runs cost more than `budget` default comparisons."""
    times = cost(requests) / REFERENCE_COST
    if times > budget:
        raise RequestError(f"This {what} would cost {times:.1f}x a default comparison; this server allows "
                           f"{budget:g}x per request. Use fewer samples or steps (an operator can raise the "
                           f"limit with --budget).")


class Service:
    """The models plus a thread-safe LRU cache of finished runs, bounded in bytes (changing only w reuses
    unguided; the w ladder makes moving w instant)."""

    def __init__(self, models: Models, cache_bytes: int = CACHE_BYTES, max_rows: int = MAX_ROWS,
                 budget: float = BUDGET):
        self.models, self.budget = models, budget
        self.scheduler = Scheduler(models, self.store, max_rows=max_rows)
        self.cache: OrderedDict[Request, FinishedRun] = OrderedDict()
        self.cache_bytes, self.cached_bytes = cache_bytes, 0
        self.lock = threading.Lock()
        self.runs_computed = 0

    def cached(self, request: Request) -> FinishedRun | None:
        with self.lock:
            key = cache_key(request)
            if key in self.cache:
                self.cache.move_to_end(key)
                return self.cache[key]
        return None

    def store(self, key: Request, run: FinishedRun) -> None:
        """Keep a finished run (the scheduler calls this), evicting the least recently used beyond the budget."""
        with self.lock:
            self.runs_computed += 1
            if key in self.cache:
                self.cached_bytes -= self.cache.pop(key).nbytes
            self.cache[key] = run
            self.cached_bytes += run.nbytes
            while self.cached_bytes > self.cache_bytes and len(self.cache) > 1:
                self.cached_bytes -= self.cache.popitem(last=False)[1].nbytes

    def runs_live(self, requests: Sequence[Request], background: bool = False, poll: float = 0.25
                  ) -> Progress[tuple[list[FinishedRun], frozenset[int]]]:
        """Cached runs where possible; the rest sampled by the scheduler, batched with everyone else's
        (background: only while no interactive request waits). Yields progress at least every `poll` s;
        returns the runs in order and the ids of the batches sampled for them. Closing it early cancels
        what only this caller waited for."""
        keys = [cache_key(r) for r in requests]
        found = {key: run for key in dict.fromkeys(keys) if (run := self.cached(key)) is not None}  # held here
        ticket = self.scheduler.submit([key for key in dict.fromkeys(keys) if key not in found], background)
        try:
            while not ticket.finished:
                ticket.wait(poll)
                yield ticket.progress()
        finally:
            if not ticket.finished:
                ticket.cancel()
        if ticket.error is not None:
            raise ticket.error
        found.update(ticket.runs)
        return [found[key] for key in keys], frozenset(run.batch for run in ticket.runs.values())

    def missing(self, requests: Sequence[Request]) -> int:
        """How many of these runs are not cached (0: showing them samples nothing)."""
        return sum(self.cached(r) is None for r in dict.fromkeys(cache_key(r) for r in requests))

    def _results(self, base: Request, keys: list, requests: list[Request], background: bool = False
                 ) -> Progress[Results]:
        if not background:             # the w ladder is the server's own work: app.py sizes it
            check_budget(requests, self.budget, "comparison" if isinstance(keys[0], str) else "sweep")
        runs, fresh = yield from self.runs_live(requests, background)
        return Results(base, dict(zip(keys, runs)), fresh)

    def compare_live(self, base: Request, methods: Sequence[str] = METHODS,
                     weights: dict[str, float] | None = None) -> Live[Results]:
        """Every method with the same seed and settings (each at its own w if `weights` says so), sampled
        together; runs keyed by method."""
        return Live(self._results(base, list(methods), comparison_requests(base, methods, weights)))

    def compare(self, base: Request, methods: Sequence[str] = METHODS,
                weights: dict[str, float] | None = None) -> Results:
        return self.compare_live(base, methods, weights).run()

    def sweep_live(self, base: Request, methods: Sequence[str] = METHODS[1:],
                   weights: Sequence[float] = SWEEP_WEIGHTS, background: bool = False) -> Live[Results]:
        """Every guided method at every w, sampled together in bounded groups; runs keyed by (method, w).
        `background`: only while no interactive request waits (the w ladder)."""
        keys = [(m, w) for m in methods for w in weights]
        return Live(self._results(base, keys, sweep_requests(base, methods, weights), background))


def sweep_requests(base: Request, methods: Sequence[str] = METHODS[1:],
                   weights: Sequence[float] = SWEEP_WEIGHTS) -> list[Request]:
    """Every method at every w (the sweep, or the w ladder), in (method, w) order."""
    return [replace(base, method=m, weight=w) for m in methods for w in weights]
