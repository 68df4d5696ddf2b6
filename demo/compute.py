"""One thread for every torch computation of the app.

torch's CPU kernels parallelise with OpenMP (libgomp), which keeps one thread team per calling thread. Once
more OpenMP threads exist than cores (a second team: the main thread loaded the weights, a Gradio worker thread
samples), libgomp stops spin-waiting and every parallel region pays a futex wake-up (the README's Speed
section has the measurement). Running all torch work on this one long-lived thread keeps a single team, and
it is the one place that serialises the CPU-bound work. Handlers do not run on it: they wait on the
scheduler (demo/scheduler.py), whose batched steps run here, between the 2-D lab's steps.
"""
from __future__ import annotations

import contextvars
import functools
import inspect
import threading
from concurrent.futures import ThreadPoolExecutor

_DONE = object()


class ComputeThread:
    """One long-lived thread for torch work (sampling steps of demo/scheduler.py, the 2-D lab's steps)."""

    def __init__(self, name: str = "guidance-lab-compute"):
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.thread = self.executor.submit(threading.current_thread).result()

    def call(self, fn, *args, **kwargs):
        """fn(*args, **kwargs) on the compute thread (with the caller's context variables); re-entrant."""
        if threading.current_thread() is self.thread:
            return fn(*args, **kwargs)
        context = contextvars.copy_context()        # Gradio's progress tracking lives in context variables
        return self.executor.submit(context.run, fn, *args, **kwargs).result()

    def wrap(self, fn):
        """A handler (plain or generator function) whose body runs on the compute thread, step by step: other
        work (the scheduler's steps) interleaves between its steps."""
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def generator(*args, **kwargs):
                steps = self.call(fn, *args, **kwargs)          # creating a generator runs nothing yet
                try:
                    while True:
                        item = self.call(next, steps, _DONE)
                        if item is _DONE:
                            return
                        yield item
                finally:
                    self.call(steps.close)                      # its own clean-up, on this thread too
            return generator

        @functools.wraps(fn)
        def function(*args, **kwargs):
            return self.call(fn, *args, **kwargs)
        return function


COMPUTE = ComputeThread()
on_compute_thread = COMPUTE.wrap
