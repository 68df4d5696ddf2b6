"""Continuous batching: every visitor's sampling shares one batched network call per step.

A classroom presses Generate at once. Run one after another, 30 comparisons of ~1 s each make the last
student wait 30 s or more; in one batch the CPU does the same work with far better utilisation (a denoiser
call on 300 rows costs much less than 30 calls on 10). So requests are not queued whole: each is split into
runs (one per method and w), and every step of the scheduler advances a batch of runs chosen from everything
in flight, whatever step each run has reached (runs join and leave at any step: pipeline.advance_together
evaluates rows at different noise levels in one call).

    scheduler = Scheduler(models, on_finished=cache.store)
    ticket = scheduler.submit(requests)          # requests not already cached; identical ones in flight are shared
    while not ticket.finished:
        ticket.wait(0.25)                        # drives a step (or waits for whoever does)
        show(ticket.progress())
    ticket.runs                                  # key -> FinishedRun

Who computes: there is no scheduler thread. A caller waiting on a ticket takes the step lock if it is free and
runs one step on the compute thread (demo/serving/compute.py) for everyone; the others wait for its notification.

Which runs a step takes (`choose`): interactive tickets before background ones (the w ladder fills in only while
nobody waits for a result); among those, the smallest ticket first (denoiser rows per step of what it asked
for), then the earliest; each ticket adds its runs that still fit in `max_rows` (a run that does not fit is
skipped, not a stop), and a step holds at least one run. So a ticket is stepped whole at every step as long as
it and the tickets ahead of it (no larger, or as large and earlier) fit in max_rows: a comparison submitted
after a sweep larger than it never waits for that sweep, and a class of equal comparisons is served first come
first served (the earliest finish first, rather than all at the end). `max_rows` was measured in the bench:
larger batches barely raise throughput and delay the first results.

Cancelling a ticket drops the runs that no other ticket waits for; the others go on. A job's result is
delivered to the tickets waiting under its key at the time it finishes, so a ticket that resubmitted a key
cancelled mid-step gets the run that step finished. A fault is isolated per job: when a batched step fails,
each of its jobs is stepped alone, and only the tickets of the jobs that still fail get the error.
"""
from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from demo.engine.pipeline import Models, Request
from demo.serving.compute import COMPUTE, ComputeThread
from demo.serving.recording import (
    BATCH_IDS,
    FinishedRun,
    Recorder,
    finish,
    step_together,
)

MAX_ROWS = 384             # denoiser rows per batched step (bench: rows_per_step)
INTERACTIVE, BACKGROUND = 0, 1
log = logging.getLogger("guidance_lab")


class Ticket:
    """One caller's requests in the scheduler (keys: requests as the cache knows them)."""

    def __init__(self, scheduler: Scheduler, keys: Sequence[Request], priority: int, seq: int):
        self.scheduler, self.keys, self.priority, self.seq = scheduler, list(dict.fromkeys(keys)), priority, seq
        self.rows = sum(key.rows for key in self.keys)     # its size, fixed at submission: the order of service
        self.batch = next(BATCH_IDS)              # runs sampled for this ticket carry this id
        self.runs: dict[Request, FinishedRun] = {}
        self.error: BaseException | None = None
        self.cancelled = False

    @property
    def order(self) -> tuple[int, int, int]:
        """Served before tickets with a larger order: interactive first, then the smaller, then the earlier."""
        return self.priority, self.rows, self.seq

    @property
    def finished(self) -> bool:
        return self.error is not None or self.cancelled or len(self.runs) == len(self.keys)

    def progress(self) -> tuple[int, int]:
        """(steps done, steps in all) over this ticket's runs."""
        return self.scheduler.progress(self)

    def wait(self, timeout: float) -> None:
        """Run one step for everyone, or wait (at most `timeout` s) for the step someone else runs."""
        self.scheduler.drive(self, timeout)

    def cancel(self) -> None:
        self.scheduler.cancel(self)

    def previews(self) -> dict[Request, object]:
        """key -> the last recorded Step of each of this ticket's runs that has started (recording.preview)."""
        return self.scheduler.previews(self)

    def ahead(self) -> int:
        """How many other interactive requests are served before this one while none of its runs has started."""
        return self.scheduler.ahead(self)


@dataclass(eq=False)
class Job:
    """A run in flight and the tickets that wait for it (identical requests share one job)."""
    key: Request
    batch: int
    tickets: set[Ticket] = field(default_factory=set)
    recorder: Recorder | None = None       # made on the compute thread when the run is first stepped

    def priority(self) -> tuple[int, int, int]:
        """The order of the first ticket that waits for it (Ticket.order)."""
        return min(t.order for t in self.tickets)


class Scheduler:
    def __init__(self, models: Models, on_finished: Callable[[Request, FinishedRun], None] = lambda k, r: None,
                 compute: ComputeThread = COMPUTE, max_rows: int = MAX_ROWS):
        self.models, self.on_finished, self.compute, self.max_rows = models, on_finished, compute, max_rows
        self.state = threading.Condition()        # guards jobs and tickets; notified after every step
        self.stepping = threading.Lock()          # one step at a time
        self.jobs: dict[Request, Job] = {}
        self.seq = itertools.count()
        self.steps_run = 0

    def submit(self, keys: Sequence[Request], background: bool = False) -> Ticket:
        """A ticket for these runs (their cache keys), sampled as soon as rows are free; a key already in
        job joins that job."""
        with self.state:
            ticket = Ticket(self, keys, BACKGROUND if background else INTERACTIVE, next(self.seq))
            for key in ticket.keys:
                job = self.jobs.get(key)
                if job is None:
                    job = self.jobs[key] = Job(key, ticket.batch)
                job.tickets.add(ticket)
            return ticket

    def cancel(self, ticket: Ticket) -> None:
        with self.state:
            ticket.cancelled = True
            for key in ticket.keys:
                job = self.jobs.get(key)
                if job is not None:
                    job.tickets.discard(ticket)
                    if not job.tickets:
                        del self.jobs[key]
            self.state.notify_all()

    def previews(self, ticket: Ticket) -> dict[Request, object]:
        with self.state:
            return {key: job.recorder.latest for key in ticket.keys if (job := self.jobs.get(key)) is not None
                    and job.recorder is not None and job.recorder.latest is not None}

    def ahead(self, ticket: Ticket) -> int:
        with self.state:
            if any((job := self.jobs.get(key)) is not None and job.recorder is not None for key in ticket.keys):
                return 0
            others = {t for job in self.jobs.values() for t in job.tickets if t is not ticket and not t.finished}
            return sum(t.order < ticket.order for t in others)

    def progress(self, ticket: Ticket) -> tuple[int, int]:
        with self.state:
            done = total = 0
            for key in ticket.keys:
                steps = key.sampler.num_steps + 1
                total += steps
                if key in ticket.runs:
                    done += steps
                elif (job := self.jobs.get(key)) is not None and job.recorder is not None:
                    done += job.recorder.steps_done
            return done, total

    def drive(self, ticket: Ticket, timeout: float) -> None:
        if ticket.finished:
            return
        if self.stepping.acquire(blocking=False):
            try:
                self.compute.call(self.step)
            finally:
                self.stepping.release()
        else:
            with self.state:
                if not ticket.finished:
                    self.state.wait(timeout)

    def choose(self) -> list[Job]:
        """The jobs of the next step (the module docstring says why): interactive before background, then by
        their first ticket's order; every job that still fits in max_rows (at least one)."""
        jobs = sorted(self.jobs.values(), key=Job.priority)
        if jobs and jobs[0].priority()[0] == INTERACTIVE:
            jobs = [j for j in jobs if j.priority()[0] == INTERACTIVE]
        chosen, used = [], 0
        for job in jobs:
            size = job.key.rows
            if chosen and used + size > self.max_rows:
                continue                            # skip it: a smaller job further on may still fit
            chosen.append(job)
            used += size
        return chosen

    def step(self) -> None:
        """One step of the chosen runs (on the compute thread); finished runs go to their tickets, and a fault
        only to the tickets of the job that raised it."""
        with self.state:
            chosen = self.choose()
        if not chosen:
            return
        failed: dict[Job, BaseException] = {}
        for job in chosen:
            if job.recorder is None:
                try:
                    job.recorder = Recorder(self.models, job.key, job.batch)
                except Exception as error:
                    failed[job] = error
        ready = [j for j in chosen if j not in failed]
        _isolated([j for j in ready if not j.recorder.done],
                  lambda jobs: step_together(self.models, [j.recorder for j in jobs]), failed)
        runs = _isolated([j for j in ready if j not in failed and j.recorder.done],
                         lambda jobs: finish(self.models, [j.recorder for j in jobs]), failed)
        with self.state:
            self.steps_run += 1
            for job, error in failed.items():      # a real fault: its traceback, once, and its waiters told
                log.error("sampling %s failed", job.key, exc_info=error)
                for ticket in self._remove(job, adopt=False):
                    ticket.error = error
            for job, run in runs.items():
                self.on_finished(job.key, run)
                for ticket in self._remove(job, adopt=True):
                    ticket.runs[job.key] = run
            self.state.notify_all()

    def _remove(self, job: Job, adopt: bool) -> set[Ticket]:
        """Take an ended job out; the tickets to tell. Cancelled mid-step and resubmitted, its key may hold a
        newer job: that one stays, unless `adopt` (the run finished): then its tickets take this run."""
        current = self.jobs.get(job.key)
        if current is not job and not (adopt and current is not None):
            return job.tickets
        del self.jobs[job.key]
        return job.tickets | current.tickets


def _isolated(jobs: list[Job], work: Callable[[list[Job]], list], failed: dict[Job, BaseException]) -> dict:
    """work(jobs) in one batch -> {job: result}. If the batch fails, each job is tried alone (a job the failed
    batch already moved on is not: its record is incomplete); the jobs that fail go to `failed`."""
    if not jobs:
        return {}
    before = [j.recorder.steps_done for j in jobs]
    try:
        return dict(zip(jobs, work(jobs)))
    except Exception as error:
        fault = error
    if len(jobs) == 1:
        failed[jobs[0]] = fault
        return {}
    results = {}
    for job, steps in zip(jobs, before):
        if job.recorder.steps_done != steps:
            failed[job] = fault
            continue
        try:
            results[job] = work([job])[0]
        except Exception as own:
            failed[job] = own
    return results
