"""One thread for every torch computation of the app.

torch's CPU kernels parallelise with OpenMP (libgomp), which keeps one thread team per calling thread. Once
more OpenMP threads exist than cores (a second team: the main thread loaded the weights, a Gradio worker thread
samples), libgomp stops spin-waiting and every parallel region pays a futex wake-up (the README's Speed
section has the measurement). Running all torch work on this one long-lived thread keeps a single team, and
it is the one place that serialises the CPU-bound work: handlers interleave step by step on it.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import threading
from concurrent.futures import ThreadPoolExecutor

_DONE = object()


class ComputeThread:
    """One long-lived thread for torch work. Interactive work (a visitor waiting for a result) goes first:
    background work (the w ladder) waits between its steps while any interactive job is running."""

    def __init__(self, name: str = "guidance-lab-compute"):
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.thread = self.executor.submit(threading.current_thread).result()
        self.interactive = 0                        # interactive jobs running now
        self.quiet = threading.Condition()

    def call(self, fn, *args, **kwargs):
        """fn(*args, **kwargs) on the compute thread (with the caller's context variables); re-entrant."""
        if threading.current_thread() is self.thread:
            return fn(*args, **kwargs)
        context = contextvars.copy_context()        # Gradio's progress tracking lives in context variables
        return self.executor.submit(context.run, fn, *args, **kwargs).result()

    @contextlib.contextmanager
    def interactive_job(self):
        with self.quiet:
            self.interactive += 1
        try:
            yield
        finally:
            with self.quiet:
                self.interactive -= 1
                self.quiet.notify_all()

    def wait_until_quiet(self, timeout: float) -> bool:
        """Block until no interactive job runs, at most `timeout` seconds; whether it is quiet."""
        with self.quiet:
            return self.quiet.wait_for(lambda: self.interactive == 0, timeout)

    def wrap(self, fn=None, *, background: bool = False, waiting=None, poll: float = 0.5):
        """A handler (plain or generator function) whose body runs on the compute thread, step by step.
        `background` (generators only): before each step, wait for interactive jobs to finish, yielding
        `waiting` every `poll` seconds meanwhile (so the caller can still cancel it)."""
        if fn is None:
            return functools.partial(self.wrap, background=background, waiting=waiting, poll=poll)
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def generator(*args, **kwargs):
                steps = self.call(fn, *args, **kwargs)          # creating a generator runs nothing yet
                with contextlib.nullcontext() if background else self.interactive_job():
                    try:
                        while True:
                            while background and not self.wait_until_quiet(poll):
                                yield waiting
                            item = self.call(next, steps, _DONE)
                            if item is _DONE:
                                return
                            yield item
                    finally:
                        self.call(steps.close)                  # its own clean-up, on this thread too
            return generator

        @functools.wraps(fn)
        def function(*args, **kwargs):
            with self.interactive_job():
                return self.call(fn, *args, **kwargs)
        return function


COMPUTE = ComputeThread()
on_compute_thread = COMPUTE.wrap
