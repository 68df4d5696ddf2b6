"""The service behind the app: comparisons and sweeps of requests, answered from an LRU cache of finished runs
where possible and otherwise sampled by the scheduler, batched with every other visitor's. The UI (demo/ui)
turns widget values into requests (form.py) and draws the results.

Before anything is sampled, a request is checked (its guide must be in the loaded weights), costed against
the budget, and admitted: at most `max_in_flight` interactive requests sample at once (the next one is told at
once that the class is full), and background work (the w ladder) is counted against the visitor who asked for
it, sampled in slices that each fit the budget. Requests answered from the cache pass without any of this.

Where the sampling runs: the scheduler's batched steps on the compute thread, or, where a device call is
installed (ZeroGPU: compute.use_device_call(spaces.GPU)), one call of `sample_batch` per request: the device
worker (a forked process) gets requests and returns FinishedRuns (tensors and arrays, pickled), and the cache
stays here, in the server process.
"""
from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from demo.engine.config import BUDGET
from demo.engine.guidance import METHODS
from demo.engine.pipeline import Models, Request
from demo.engine.validation import RequestError
from demo.serving import recording
from demo.serving.compute import COMPUTE, ComputeThread
from demo.serving.recording import (  # noqa: F401 (API)
    NUM_FRAMES,
    FinishedRun,
    Live,
    Progress,
    run_methods,
    run_methods_live,
)
from demo.serving.runs import (  # noqa: F401 (API)
    REFERENCE_COST,
    SWEEP_WEIGHTS,
    cache_key,
    check_budget,
    comparison_requests,
    cost,
    shown_times,
    slices,
    sweep_requests,
    times_default,
)
from demo.serving.scheduler import MAX_ROWS, Scheduler

LADDER = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)   # sampled ahead: instant w
CACHE_BYTES = 400 * 2**20  # finished runs kept (a run of 8 samples x 32 steps with its trajectory: ~0.5 MB)
FULL = ("The class is full: {n} comparisons are being sampled right now; please press Generate again in a few "
        "seconds.")               # an interactive request refused by max_in_flight




class Watch:
    """What a caller may show while its request samples: the last step of every started run (its tensors;
    recording.preview makes pixels of them) and, before any has started, how many requests are served first."""

    def __init__(self):
        self.ticket = None

    def previews(self) -> dict[Request, object]:
        return {} if self.ticket is None else self.ticket.previews()

    def ahead(self) -> int:
        return 0 if self.ticket is None else self.ticket.ahead()


@dataclass(frozen=True)
class Results:
    """Runs of one request of the app, keyed by method (comparison) or (method, w) (sweep)."""
    base: Request
    runs: dict
    fresh_batches: frozenset[int]    # batches sampled for this request; the other runs came from the cache


class Service:
    """The models plus a thread-safe LRU cache of finished runs, bounded in bytes (changing only w reuses
    unguided; the w ladder makes moving w instant), and the admission of what is sampled (module docstring)."""

    def __init__(self, models: Models, cache_bytes: int = CACHE_BYTES, max_rows: int = MAX_ROWS,
                 budget: float = BUDGET, max_in_flight: int | None = None, compute: ComputeThread = COMPUTE):
        self.models, self.budget, self.max_in_flight, self.compute = models, budget, max_in_flight, compute
        self.scheduler = Scheduler(models, self.store, compute=compute, max_rows=max_rows)
        self.cache: OrderedDict[Request, FinishedRun] = OrderedDict()
        self.cache_bytes, self.cached_bytes = cache_bytes, 0
        self.lock = threading.Lock()
        self.runs_computed = 0
        self.sampling = 0                              # interactive requests sampling now
        self.background: dict[object, float] = {}      # visitor -> cost of their background work in flight
        compute.device(self.sample_batch)              # ZeroGPU: decorated now, before the server launches
        compute.device(self.probe_batch)

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

    def check(self, requests: Sequence[Request]) -> None:
        """RequestError now if the loaded weights cannot sample these runs (a guide the folder lacks)."""
        for key in dict.fromkeys(cache_key(r) for r in requests):
            self.models.check(key)

    @contextlib.contextmanager
    def admitted(self, keys: Sequence[Request], background: bool, visitor: str | None):
        """Hold a place for sampling `keys`, or RequestError at once: interactive work while fewer than
        max_in_flight requests sample; background work while the visitor's background in flight fits the budget
        (and fewer than max_in_flight visitors have some). No visitor named: an account of its own."""
        times = times_default(keys) if background else 0.0
        visitor = object() if visitor is None else visitor
        with self.lock:
            if background:
                held = self.background.get(visitor)
                if held is None and self.max_in_flight is not None and len(self.background) >= self.max_in_flight:
                    raise RequestError(f"The server is busy: {len(self.background)} w ladders are being sampled; "
                                       f"moving w samples each value instead.")
                if (held or 0.0) + times > self.budget:
                    raise RequestError(f"This w ladder would bring your background work to "
                                       f"{shown_times((held or 0.0) + times)} a default comparison; this server allows "
                                       f"{self.budget:g}x per visitor at once.")
                self.background[visitor] = (held or 0.0) + times
            else:
                if self.max_in_flight is not None and self.sampling >= self.max_in_flight:
                    raise RequestError(FULL.format(n=self.sampling))
                self.sampling += 1
        try:
            yield
        finally:
            with self.lock:
                if not background:
                    self.sampling -= 1
                elif (left := self.background.pop(visitor) - times) > 1e-9:
                    self.background[visitor] = left

    def probe(self, runs: Sequence[FinishedRun], index: int) -> None:
        """Fill in p(target | x_t) of sample `index` of these runs (recording.probe: what the trajectory plot of
        a followed sample shows), on the compute thread or in one device call."""
        device = self.compute.device(self.probe_batch)
        columns = device(list(runs), index) if device is not None else \
            self.compute.call(recording.probe, self.models, runs, index)
        for run, column in zip(runs, columns):
            run.p_target[:, index] = column

    def probe_batch(self, runs: list[FinishedRun], index: int) -> list:
        """The unit of device work for probe (ZeroGPU: pickled in and out)."""
        return recording.probe(self.models, runs, index)

    def sample_batch(self, keys: list[Request]) -> list[FinishedRun]:
        """The unit of device work (ZeroGPU: one spaces.GPU call in a forked worker): sample these runs together
        and return them, nothing else: arguments and results are pickled, and caching happens in the caller."""
        return run_methods(self.models, keys)

    def runs_live(self, requests: Sequence[Request], background: bool = False, poll: float = 0.25,
                  visitor: str | None = None, watch: Watch | None = None
                  ) -> Progress[tuple[list[FinishedRun], frozenset[int]]]:
        """Cached runs where possible; the rest sampled by the scheduler, batched with everyone else's
        (background: only while no interactive request waits), or by one device call. Yields progress at least
        every `poll` s; returns the runs in order and the ids of the batches sampled for them. Closing it early
        cancels what only this caller waited for."""
        self.check(requests)
        keys = [cache_key(r) for r in requests]
        found = {key: run for key in dict.fromkeys(keys) if (run := self.cached(key)) is not None}  # held here
        missing = [key for key in dict.fromkeys(keys) if key not in found]
        sampled: dict[Request, FinishedRun] = {}
        if missing:
            with self.admitted(missing, background, visitor):
                sampled = yield from self._sample(missing, background, poll, watch)
        found.update(sampled)
        return [found[key] for key in keys], frozenset(run.batch for run in sampled.values())

    def _sample(self, keys: list[Request], background: bool, poll: float, watch: Watch | None = None
                ) -> Progress[dict[Request, FinishedRun]]:
        device = self.compute.device(self.sample_batch)
        if device is not None:
            total = sum(_steps(key) for key in keys)
            yield 0, total
            runs = dict(zip(keys, device(keys)))
            for key, run in runs.items():
                self.store(key, run)
            yield total, total
            return runs
        ticket = self.scheduler.submit(keys, background)
        if watch is not None:
            watch.ticket = ticket
        try:
            while not ticket.finished:
                ticket.wait(poll)
                yield ticket.progress()
        finally:
            if not ticket.finished:
                ticket.cancel()
        if ticket.error is not None:
            raise ticket.error
        return ticket.runs

    def missing(self, requests: Sequence[Request]) -> int:
        """How many of these runs are not cached (0: showing them samples nothing)."""
        return sum(self.cached(r) is None for r in dict.fromkeys(cache_key(r) for r in requests))

    def _results(self, base: Request, keys: list, requests: list[Request], watch: Watch | None = None
                 ) -> Progress[Results]:
        check_budget(requests, self.budget, "comparison" if isinstance(keys[0], str) else "sweep")
        runs, fresh = yield from self.runs_live(requests, watch=watch)
        return Results(base, dict(zip(keys, runs)), fresh)

    def _background(self, base: Request, keys: list, requests: list[Request], visitor: str | None
                    ) -> Progress[Results]:
        """The w ladder: its missing runs in slices that each fit the budget, one slice at a time (each admitted
        against the visitor's background work)."""
        self.check(requests)
        runs = {key: run for key in dict.fromkeys(cache_key(r) for r in requests)
                if (run := self.cached(key)) is not None}
        missing = [key for key in dict.fromkeys(cache_key(r) for r in requests) if key not in runs]
        total, done, fresh = sum(_steps(k) for k in missing), 0, frozenset()
        for group in slices(missing, self.budget, "w ladder"):
            sampled, batches = yield from _offset(self.runs_live(group, True, visitor=visitor), done, total)
            runs.update(zip(group, sampled))
            done, fresh = done + sum(_steps(k) for k in group), fresh | batches
        return Results(base, {key: runs[cache_key(r)] for key, r in zip(keys, requests)}, fresh)

    def compare_live(self, base: Request, methods: Sequence[str] = METHODS,
                     weights: dict[str, float] | None = None) -> Live[Results]:
        """Every method with the same seed and settings (each at its own w if `weights` says so), sampled
        together; runs keyed by method. `live.watch` shows it forming (Watch)."""
        watch = Watch()
        live = Live(self._results(base, list(methods), comparison_requests(base, methods, weights), watch))
        live.watch = watch
        return live

    def compare(self, base: Request, methods: Sequence[str] = METHODS,
                weights: dict[str, float] | None = None) -> Results:
        return self.compare_live(base, methods, weights).run()

    def sweep_live(self, base: Request, methods: Sequence[str] = METHODS[1:],
                   weights: Sequence[float] = SWEEP_WEIGHTS, background: bool = False, visitor: str | None = None
                   ) -> Live[Results]:
        """Every guided method at every w, sampled together in bounded groups; runs keyed by (method, w).
        `background` (the w ladder): only while no interactive request waits, in slices within the budget,
        counted against `visitor` (e.g. the Gradio session)."""
        keys, requests = [(m, w) for m in methods for w in weights], sweep_requests(base, methods, weights)
        if background:
            return Live(self._background(base, keys, requests, visitor))
        return Live(self._results(base, keys, requests))


def _steps(key: Request) -> int:
    return key.sampler.num_steps + 1


def _offset(progress: Progress, done: int, total: int) -> Progress:
    """`progress` counted from `done` steps of `total`; returns its result (closing this closes it)."""
    try:
        while True:
            try:
                steps, _ = next(progress)
            except StopIteration as stop:
                return stop.value
            yield done + steps, total
    finally:
        progress.close()


