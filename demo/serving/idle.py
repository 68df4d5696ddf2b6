"""An idle server that sleeps: Gradio's queue polls every 1 ms for new events and every 10 ms for progress
(gradio/queueing.py: sleep_when_free, progress_update_sleep_when_free), about 1,100 wake-ups a second and
5–7% of a CPU with nobody connected. quiet_when_idle keeps those intervals while there is work, or was in the
last BUSY_SECONDS, and polls every IDLE_POLL seconds otherwise: the first event after a quiet spell waits at
most IDLE_POLL before it starts.
"""
from __future__ import annotations

import time

from gradio import queueing

IDLE_POLL = 0.05                                       # seconds between polls of an idle queue
BUSY_SECONDS = 10.0                                    # polling stays fast this long after the last event


class QuietQueue(queueing.Queue):
    """Gradio's Queue with its two polling intervals read through properties (Gradio's own values while busy,
    IDLE_POLL when idle). Installed on an existing queue by quiet_when_idle."""

    @property
    def sleep_when_free(self) -> float:
        return self.__dict__["sleep_when_free"] if self.busy() else IDLE_POLL

    @sleep_when_free.setter
    def sleep_when_free(self, value: float) -> None:
        self.__dict__["sleep_when_free"] = value

    @property
    def progress_update_sleep_when_free(self) -> float:
        return self.__dict__["progress_update_sleep_when_free"] if self.busy() else IDLE_POLL

    @progress_update_sleep_when_free.setter
    def progress_update_sleep_when_free(self, value: float) -> None:
        self.__dict__["progress_update_sleep_when_free"] = value

    def busy(self) -> bool:
        """Events waiting or running, or an event pushed in the last BUSY_SECONDS."""
        return (len(self) > 0 or any(job is not None for job in self.active_jobs)
                or time.monotonic() - self.__dict__.get("last_push", -BUSY_SECONDS) < BUSY_SECONDS)

    async def push(self, *args, **kwargs):
        self.__dict__["last_push"] = time.monotonic()
        return await super().push(*args, **kwargs)


def quiet_when_idle(blocks):
    """Make `blocks`' queue poll slowly while idle (call after blocks.queue(), before launch)."""
    queue = blocks._queue
    if type(queue) is queueing.Queue:
        queue.__class__ = QuietQueue
    return blocks
