"""The outbox's workers: lease due rows of one channel (or one CAD endpoint), deliver, record.

Each is woken (`kick`) right after a commit and also polls, so rows left by a crash
or an outage are delivered once their lease runs out. A lease is renewed while its
delivery runs, so however slow an endpoint is, no other worker takes (and delivers
again) a row in flight.
"""

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from server.alerts import outbox
from server.core import db
from server.core.config import Settings
from server.core.tasks import OwnedTask, cancel_and_wait

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 1.0
LEASE_LIMIT = 100


class Polling(OwnedTask):
    """A task that works when kicked (right after a commit) and at least every poll interval
    (rows left by a crash or an outage become due without anyone kicking)."""

    def __init__(self, poll_interval_s: float = POLL_INTERVAL_S):
        self._wake = asyncio.Event()
        self._poll_interval_s = poll_interval_s

    def kick(self) -> None:
        self._wake.set()

    async def _woken(self) -> None:
        try:
            async with asyncio.timeout(self._poll_interval_s):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()


class Worker(Polling):
    """Leases due rows of one channel and hands them to `deliver`, which returns
    (done ids, {delay in seconds: ids to retry}). While `deliver` runs, the lease is renewed
    every third of it, so however long the posts take no other worker leases these rows."""

    def __init__(self, *, channel: str, engine: AsyncEngine, settings: Settings, deliver,
                 targets: list[str] | None = None, name: str | None = None, queue=outbox):
        """`targets`: only rows for these targets (one CAD endpoint). `queue`: where the rows are,
        anything with the `lease`, `renew`, `complete` and `postpone` of `outbox` (the alerts'
        outbox, by default; the trips' events are another)."""
        super().__init__(settings.outbox_poll_interval_s)
        self.channel = channel
        self._queue = queue
        self._targets = targets
        self._engine = engine
        self._settings = settings
        self._deliver = deliver
        self.task_name = f"relay-{name or channel}"

    async def _run(self) -> None:
        while True:
            await self._woken()
            try:
                while await self._round():
                    pass
                self.health.progressed()
            except db.STORAGE_ERRORS as error:
                log.error("%s: storage unavailable (%s); retrying", self.task_name, db.describe(error))
                self.health.failed(f"deliveries cannot run: storage unavailable ({db.describe(error)})")
            except Exception:
                # A bug in one delivery must not end the channel: its rows stay leased and come
                # back when the lease runs out. Logged with the traceback, never swallowed quietly.
                log.exception("%s: delivery failed; its rows will be retried", self.task_name)
                self.health.failed("a delivery failed (a defect, logged with its traceback); retrying")
                await asyncio.sleep(self._poll_interval_s)

    async def _round(self) -> bool:
        """One lease-deliver-record round; True when it leased a full batch (more may be due)."""
        lease_s = self._settings.outbox_lease_s
        async with self._engine.begin() as connection:
            rows = await self._queue.lease(connection=connection, channel=self.channel, targets=self._targets,
                                           lease_s=lease_s, limit=LEASE_LIMIT)
        if not rows:
            return False
        delivery = asyncio.create_task(self._deliver(rows), name=f"{self.task_name}-delivery")
        try:
            while not (await asyncio.wait({delivery}, timeout=lease_s / 3))[0]:
                async with self._engine.begin() as connection:
                    await self._queue.renew(connection=connection, ids=[row.id for row in rows], lease_s=lease_s)
        finally:
            await cancel_and_wait(delivery)
        done, retry = delivery.result()
        async with self._engine.begin() as connection:
            await self._queue.complete(connection=connection, ids=done)
            for delay_s, ids in retry.items():
                await self._queue.postpone(connection=connection, ids=ids, delay_s=delay_s)
        return len(rows) == LEASE_LIMIT


class Expander(Polling):
    """Turns each generic CAD row into one row per CAD endpoint this process knows, then wakes
    the endpoints' workers."""

    task_name = "relay-cad-expand"
    channel = outbox.CAD

    def __init__(self, *, engine: AsyncEngine, targets: list[str], workers: list[Worker],
                 poll_interval_s: float = POLL_INTERVAL_S):
        super().__init__(poll_interval_s)
        self._engine = engine
        self._targets = targets
        self._workers = workers

    async def _run(self) -> None:
        while True:
            await self._woken()
            try:
                async with self._engine.begin() as connection:
                    written = await outbox.expand(connection=connection, channel=outbox.CAD, targets=self._targets,
                                                  limit=LEASE_LIMIT)
                self.health.progressed()
            except db.STORAGE_ERRORS as error:
                log.error("CAD rows not expanded, storage unavailable (%s); retrying", db.describe(error))
                self.health.failed(f"CAD deliveries cannot run: storage unavailable ({db.describe(error)})")
                continue
            if written:
                for worker in self._workers:
                    worker.kick()
                self._wake.set()  # a full batch: there may be more
