"""A computation that reports its progress step by step, so that a caller can show it or stop between steps."""
from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
Progress = Generator[tuple[int, int], None, T]      # yields (steps done, total); returns the result


class Live(Generic[T]):
    """A computation that reports progress: iterating it yields (steps done, total) after every sampling step,
    so a caller can show progress or stop between steps; afterwards `result` holds what it computed."""

    def __init__(self, steps: Progress[T]):
        self.steps, self.result, self.done = steps, None, False
        self.watch = None              # what the producer lets a caller look at meanwhile (serving.service.Watch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.done:
            raise RuntimeError("a Live computation runs once")
        self.result = yield from self.steps
        self.done = True

    def run(self) -> T:
        """Run to the end without watching; the result."""
        for _ in self:
            pass
        return self.result
