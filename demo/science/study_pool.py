"""A deadline-aware pool of worker processes on one machine (one GPU shared by all of them).

Small networks train and sample launch-bound: one Python thread cannot keep a GPU busy, a dozen processes can.
Tasks carry a priority, the keys of the tasks they need, and a payload whose `run(context)` the worker calls
(`context` is the worker's own cache: loaded networks, the reference features). The pool starts `workers` spawned
processes, hands each the most urgent ready task, and stops handing out work at `stop_at` (time.monotonic()); it
then waits at most `grace` seconds for the tasks in flight and terminates the workers. A task that raises is
reported with its traceback and never stops the others; a task whose needs failed is dropped.
"""
from __future__ import annotations

import os
import queue
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch.multiprocessing as mp


@dataclass(order=True)
class Task:
    priority: tuple
    key: str = field(compare=False)
    payload: Any = field(compare=False)
    needs: frozenset[str] = field(default=frozenset(), compare=False)


def _worker(index: int, setup: Callable[[], dict], inbox, outbox) -> None:
    try:
        context = setup()
    except BaseException:                                    # the worker cannot start: say so and stop
        outbox.put((index, None, "dead", traceback.format_exc()))
        return
    outbox.put((index, None, "ready", os.getpid()))
    while (task := inbox.get()) is not None:
        started = time.monotonic()
        try:
            result = task.payload.run(context, lambda message: outbox.put((index, task.key, "note", message)))
            outbox.put((index, task.key, "done", (result, time.monotonic() - started)))
        except BaseException:
            outbox.put((index, task.key, "failed", traceback.format_exc()))


@dataclass
class Outcome:
    done: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)       # never started (deadline, or a need failed)
    cut: list[str] = field(default_factory=list)           # in flight at the deadline
    ready: list[float] = field(default_factory=list)       # seconds from the start until each worker was ready


def run(tasks: list[Task], workers: int, setup: Callable[[], dict], stop_at: float, grace: float,
        on_done: Callable[[Task, Any, float], None], on_note: Callable[[str, Any], None],
        on_idle: Callable[[], None] = lambda: None) -> Outcome:
    """Run `tasks` on `workers` processes until all are done or `stop_at`; on_done(task, result, seconds) and
    on_note(key, message) are called in this process as messages arrive, on_idle about once a second."""
    ctx = mp.get_context("spawn")
    outbox = ctx.Queue()
    inboxes = [ctx.Queue() for _ in range(workers)]
    procs = [ctx.Process(target=_worker, args=(k, setup, inboxes[k], outbox), daemon=True) for k in range(workers)]
    for p in procs:
        p.start()
    pending = sorted(tasks)
    by_key = {t.key: t for t in tasks}
    outcome, running, idle, alive = Outcome(), {}, [], set(range(workers))
    began = last_idle = time.monotonic()

    def ready(task: Task) -> bool:
        return task.needs <= outcome.done.keys()

    try:
        while (pending or running) and alive and time.monotonic() < stop_at:
            failed_needs = [t for t in pending if t.needs & outcome.failed.keys()]
            for t in failed_needs:
                pending.remove(t)
                outcome.dropped.append(t.key)
                outcome.failed.setdefault(t.key, "a task it needs failed")
            while idle and (task := next((t for t in pending if ready(t)), None)):
                pending.remove(task)
                k = idle.pop()
                running[k] = task
                inboxes[k].put(task)
            if not running and pending and not any(ready(t) for t in pending):
                break                                         # nothing can ever become ready
            _receive(outbox, 0.2, by_key, running, idle, alive, outcome, on_done, on_note, began)
            if time.monotonic() - last_idle > 1:
                began = last_idle = time.monotonic()
                on_idle()
                for k in list(alive):
                    if not procs[k].is_alive():              # died without a word (killed, out of memory)
                        alive.discard(k)
                        if k in running:
                            outcome.failed[running.pop(k).key] = f"worker {k} died (exit code {procs[k].exitcode})"
        outcome.dropped += [t.key for t in pending]
        end = time.monotonic() + grace
        while running and alive and time.monotonic() < end:
            _receive(outbox, 0.2, by_key, running, idle, alive, outcome, on_done, on_note, began)
        outcome.cut = [t.key for t in running.values()]
    finally:
        for inbox in inboxes:
            inbox.put(None)
        end = time.monotonic() + 1.0
        for p in procs:
            p.join(timeout=max(0.0, end - time.monotonic()))
        for p in procs:
            if p.is_alive():
                p.terminate()                                 # our own worker, still in a task at the deadline
        for p in procs:
            p.join(timeout=2)
    return outcome


def _receive(outbox, timeout, by_key, running, idle, alive, outcome, on_done, on_note, began) -> None:
    try:
        k, key, kind, value = outbox.get(timeout=timeout)
    except queue.Empty:
        return
    if kind == "ready":
        idle.append(k)
        outcome.ready.append(round(time.monotonic() - began, 1))
    elif kind == "dead":
        alive.discard(k)
        on_note(f"worker {k}", value)
    elif kind == "note":
        on_note(key, value)
    else:
        running.pop(k, None)
        idle.append(k)
        if kind == "done":
            result, seconds = value
            outcome.done[key] = result
            on_done(by_key[key], result, seconds)
        else:
            outcome.failed[key] = value
            on_note(key, value)
