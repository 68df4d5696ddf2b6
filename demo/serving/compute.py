"""One thread for every torch computation of the app, or, on ZeroGPU, one device call per sampling request.

torch's CPU kernels parallelise with OpenMP (libgomp), which keeps one thread team per calling thread. Once
more OpenMP threads exist than cores (a second team: the main thread loaded the weights, a Gradio worker thread
samples), libgomp stops spin-waiting and every parallel region pays a futex wake-up (the README's Speed
section has the measurement). Running all torch work on this one long-lived thread keeps a single team, and
it is the one place that serialises the CPU-bound work. Handlers do not run on it: they wait on the
scheduler (demo/serving/scheduler.py), whose batched steps run here, between the 2-D lab's steps.

On Hugging Face ZeroGPU, CUDA work must run inside functions decorated with `spaces.GPU`, and such a function
runs in a forked worker process that gets its arguments and returns its results by pickling: whatever it
writes to memory (a cache) stays in the worker. So the unit of device work is a pure function, requests in
and finished runs out (Service.sample_batch): demo/serving/server.py installs `use_device_call(spaces.GPU)`,
`device(fn)` is then the decorated fn, and the Service calls it and keeps the results in the server process.
Handlers need no decorator. A forked worker has no compute thread: there `call` runs its function directly.
"""
from __future__ import annotations

import contextvars
import functools
import inspect
import os
import threading
from concurrent.futures import ThreadPoolExecutor

_DONE = object()


class ComputeThread:
    """One long-lived thread for torch work (sampling steps of the scheduler, the 2-D lab's steps)."""

    def __init__(self, name: str = "guidance-lab-compute"):
        self.device_call = None                     # ZeroGPU: spaces.GPU (see the module docstring)
        self.decorated: dict = {}                   # fn -> device_call(fn), each decorated once
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.thread = self.executor.submit(threading.current_thread).result()
        self.pid = os.getpid()

    def call(self, fn, *args, **kwargs):
        """fn(*args, **kwargs) on the compute thread (with the caller's context variables); re-entrant."""
        if threading.current_thread() is self.thread or os.getpid() != self.pid:   # a forked worker: no thread
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

    # ---- ZeroGPU (see the module docstring) ----

    def use_device_call(self, decorate) -> None:
        """Run device work as `decorate(fn)` calls (ZeroGPU: spaces.GPU); install it before the Service is made,
        which decorates its sample_batch at once (ZeroGPU wants that before launch)."""
        self.device_call, self.decorated = decorate, {}

    def device(self, fn):
        """decorate(fn) (decorated once) when a device call is installed, else None: then the caller samples
        here, on the compute thread."""
        if self.device_call is None:
            return None
        if fn not in self.decorated:
            self.decorated[fn] = self.device_call(fn)
        return self.decorated[fn]



COMPUTE = ComputeThread()
on_compute_thread = COMPUTE.wrap
