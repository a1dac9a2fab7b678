"""How late the event loop runs: every socket, flush and SOS of this process waits that long.

An owned task asks to wake every `tick_s` and records how late it woke. The log
line every `every_s` gives the worst and the share of late ticks, so an operator
sees a saturated process before the consoles do; `recent_ms()` gives the p50, p99
and maximum over the last `window_s` (served on `/healthz`, read by the overload
benchmark). A tick that never comes back (the loop stuck) counts from its start.
"""

import asyncio
import logging
import time
from collections import deque

from server.core.tasks import OwnedTask

log = logging.getLogger(__name__)


class LoopLag(OwnedTask):
    task_name = "loop-lag"

    def __init__(self, *, tick_s: float = 0.02, every_s: float = 10.0, late_ms: float = 50.0,
                 window_s: float = 10.0):
        self._tick_s = tick_s
        self._every_s = every_s
        self._late_ms = late_ms
        self._window_s = window_s
        self._recent: deque[tuple[float, float]] = deque()  # (woke at, lag ms)
        self._asleep_since: float | None = None

    def recent_ms(self) -> dict[str, float]:
        """p50, p99 and max lag in ms over the last `window_s` (the tick in progress counted as
        late as it already is: a stuck loop shows, once it answers at all)."""
        now = time.monotonic()
        while self._recent and self._recent[0][0] < now - self._window_s:
            self._recent.popleft()
        lags = sorted(lag for _, lag in self._recent)
        if self._asleep_since is not None:
            lags.append(max(0.0, (now - self._asleep_since - self._tick_s) * 1000))
            lags.sort()
        if not lags:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0}
        return {"p50": round(lags[len(lags) // 2], 1), "p99": round(lags[min(len(lags) - 1, int(0.99 * len(lags)))], 1),
                "max": round(lags[-1], 1)}

    async def _run(self) -> None:
        ticks = late = 0
        worst_ms = 0.0
        window_end = time.monotonic() + self._every_s
        while True:
            before = self._asleep_since = time.monotonic()
            await asyncio.sleep(self._tick_s)
            woke = time.monotonic()
            lag_ms = (woke - before - self._tick_s) * 1000
            self._recent.append((woke, lag_ms))
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
