"""One thread for every torch computation of the app.

On Hugging Face ZeroGPU there is none: torch work must run inside functions decorated with `spaces.GPU`, and
such a function runs in a forked worker process that gets its arguments and returns its results by pickling.
So the unit of work handed to the GPU cannot be this thread's unit (one step of a handler's generator: not
picklable, and the fork has no compute thread to run it). Instead the handlers that use the models are marked
`@on_device` (app.py's `@gpu`), and demo/server.py installs `use_device_call(spaces.GPU)`: each call of such a
handler is then one decorated call (widget values in, displayable values out, both picklable) from the caller's
thread, and `call` runs torch work directly where it is asked for. Nothing is lost: the OpenMP reason below is
about CPU kernels, and ZeroGPU runs one task at a time per worker.

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
        self.handlers: list = []                    # every handler marked with on_device
        self.device_call = None                     # ZeroGPU: spaces.GPU (see the module docstring)
        self.device_handlers: dict = {}             # handler -> device_call(handler)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.thread = self.executor.submit(threading.current_thread).result()

    def call(self, fn, *args, **kwargs):
        """fn(*args, **kwargs) on the compute thread (with the caller's context variables); re-entrant."""
        if threading.current_thread() is self.thread or self.device_call is not None:
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

    def on_device(self, fn):
        """Mark a handler whose calls do the models' torch work. Nothing changes until use_device_call(decorate):
        then each call of it is one decorate(fn) call."""
        self.handlers.append(fn)
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def generator(*args, **kwargs):
                return (yield from self._target(fn)(*args, **kwargs))
            return generator

        @functools.wraps(fn)
        def function(*args, **kwargs):
            return self._target(fn)(*args, **kwargs)
        return function

    def use_device_call(self, decorate) -> None:
        """Run each on_device handler as one `decorate(handler)` call in the caller's thread, and torch work where
        it is asked for (no compute thread). Decorates every handler now: ZeroGPU wants that before launch."""
        self.device_call = decorate
        self.device_handlers = {fn: decorate(fn) for fn in self.handlers}

    def _target(self, fn):
        if self.device_call is None:
            return fn
        if fn not in self.device_handlers:
            self.device_handlers[fn] = self.device_call(fn)
        return self.device_handlers[fn]


COMPUTE = ComputeThread()
on_compute_thread = COMPUTE.wrap
on_device = COMPUTE.on_device
