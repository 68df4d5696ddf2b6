"""One thread for every torch computation of the app.

torch's CPU kernels parallelise with OpenMP (libgomp), which keeps one thread team per calling thread. Once
more OpenMP threads exist than cores (a second team: the main thread loaded the weights, a Gradio worker thread
samples), libgomp stops spin-waiting and every parallel region pays a futex wake-up (the README's Speed
section has the measurement). Running all torch work on this one long-lived thread keeps a single team, and
it is the one place that serialises the CPU-bound work: handlers interleave step by step on it.
"""
from __future__ import annotations

import contextvars
import functools
import inspect
import threading
from concurrent.futures import ThreadPoolExecutor

_DONE = object()


class ComputeThread:
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
        """A handler (plain or generator function) whose body runs on the compute thread, step by step."""
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def generator(*args, **kwargs):
                steps = self.call(fn, *args, **kwargs)          # creating a generator runs nothing yet
                while (item := self.call(next, steps, _DONE)) is not _DONE:
                    yield item
            return generator

        @functools.wraps(fn)
        def function(*args, **kwargs):
            return self.call(fn, *args, **kwargs)
        return function


COMPUTE = ComputeThread()
on_compute_thread = COMPUTE.wrap
