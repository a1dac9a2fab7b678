"""Owned background tasks: supervised while they run, cancelled and awaited on close.

A long-lived task that crashes is logged with its traceback and started again after
a back-off (1 s, doubling to 30 s while it keeps crashing). Until it has run
`SETTLE_S` without crashing, or reports progress itself, its `Health` names the
crash, and `/healthz` answers 503 with it: a process that can no longer escalate or
store pings must not look healthy.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

FIRST_RESTART_S = 1.0
MAX_RESTART_S = 30.0
# A restarted task that has run this long is taken to have recovered.
SETTLE_S = 10.0


async def cancel_and_wait(*tasks: asyncio.Task | None) -> None:
    """Cancel these tasks (None and finished ones are skipped) and wait until they are done.
    What they raised is theirs to log; closing goes on."""
    live = [task for task in tasks if task is not None and not task.done()]
    for task in live:
        task.cancel()
    await asyncio.gather(*live, return_exceptions=True)


class Health:
    """What is wrong with one task, if anything: a crash it has not recovered from, a failure
    it reported, or (with `stale_after_s`) no progress reported for that long."""

    def __init__(self, name: str, *, stale_after_s: float | None = None):
        self.name = name
        self.stale_after_s = stale_after_s
        self._problem: str | None = None
        self._progress_at = time.monotonic()

    def progressed(self) -> None:
        """The task did its work: whatever was wrong is over."""
        self._problem = None
        self._progress_at = time.monotonic()

    def failed(self, problem: str) -> None:
        """What stops the task from doing its work now (no data in it: it is served on /healthz)."""
        self._problem = problem

    @property
    def problem(self) -> str | None:
        if self._problem is not None:
            return self._problem
        if self.stale_after_s is not None:
            idle_s = time.monotonic() - self._progress_at
            if idle_s > self.stale_after_s:
                return f"no progress for {idle_s:.0f} s"
        return None


def supervise(run: Callable[[], Awaitable[None]], *, name: str, health: Health) -> asyncio.Task:
    """Run `run()` in a task named `name` until cancelled, starting it again whenever it crashes
    or returns (a long-lived task that ends has stopped doing its job)."""

    async def supervised() -> None:
        delay_s = FIRST_RESTART_S
        while True:
            attempt = asyncio.create_task(run(), name=name)
            try:
                finished, _ = await asyncio.wait({attempt}, timeout=SETTLE_S)
                if not finished:
                    if health.problem is not None and health.problem.startswith("crashed"):
                        health.progressed()
                    delay_s = FIRST_RESTART_S
                await attempt
                health.failed("ended by itself")
                log.error("%s ended by itself; starting it again in %.0f s", name, delay_s)
            except asyncio.CancelledError:
                await cancel_and_wait(attempt)
                raise
            except Exception as error:
                health.failed(f"crashed ({type(error).__name__}); restarting")
                log.exception("%s crashed; starting it again in %.0f s", name, delay_s)
            await asyncio.sleep(delay_s)
            delay_s = min(MAX_RESTART_S, 2 * delay_s)

    return asyncio.create_task(supervised(), name=f"{name}-supervisor")


class OwnedTask:
    """A component that runs one background task of its own, `_run`, supervised from `start()`
    until `close()`; `task_name` names it in task dumps, logs and `/healthz`."""

    task_name = "owned"
    _task: asyncio.Task | None = None
    _health: Health | None = None

    @property
    def health(self) -> Health:
        if self._health is None:
            self._health = Health(self.task_name)
        return self._health

    def start(self) -> None:
        self._task = supervise(self._run, name=self.task_name, health=self.health)

    async def _run(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        await cancel_and_wait(self._task)
