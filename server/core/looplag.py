"""How late the event loop runs: every socket, flush and SOS of this process waits that long.

An owned task asks to wake every `tick_s` and records how late it woke. The log
line every `every_s` gives the worst and the share of late ticks, so an operator
sees a saturated process before the consoles do.
"""

import asyncio
import logging
import time

from server.core.tasks import OwnedTask

log = logging.getLogger(__name__)


class LoopLag(OwnedTask):
    task_name = "loop-lag"

    def __init__(self, *, tick_s: float = 0.02, every_s: float = 10.0, late_ms: float = 50.0):
        self._tick_s = tick_s
        self._every_s = every_s
        self._late_ms = late_ms

    async def _run(self) -> None:
        ticks = late = 0
        worst_ms = 0.0
        window_end = time.monotonic() + self._every_s
        while True:
            before = time.monotonic()
            await asyncio.sleep(self._tick_s)
            lag_ms = (time.monotonic() - before - self._tick_s) * 1000
            ticks += 1
            late += lag_ms > self._late_ms
            worst_ms = max(worst_ms, lag_ms)
            if time.monotonic() >= window_end:
                if late:
                    log.info("event loop: %d of %d ticks over %.0f ms late, worst %.0f ms", late, ticks,
                             self._late_ms, worst_ms)
                ticks = late = 0
                worst_ms = 0.0
                window_end = time.monotonic() + self._every_s
