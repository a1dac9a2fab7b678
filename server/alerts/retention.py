"""The retention job: location history past `history_retention_days` goes by whole partitions,
alerts past `alert_retention_days` go with what they kept; partitions are made ahead.

Every server process runs it periodically (and an operator with `guardian history retire`):
one run at a time across processes, by a session advisory lock that a process which does
not get it skips the run for. Each step is its own short transaction, so a run stopped
anywhere (a crash, a lock wait given up) leaves nothing half done and the next run goes on.
Before a partition is dropped, the fixes of the alerts' tracks in it are kept
(`record.keep_tracks`), once without a lock and then, under the drop's lock, for any fix that
arrived meanwhile.
"""

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.alerts import record
from server.core import db
from server.core.tasks import OwnedTask
from server.positions import partitions

log = logging.getLogger(__name__)

# pg_try_advisory_lock's key for this job ("GRDNRETN" read as 8 bytes, less its top bit).
LOCK_KEY = 0x4752444E5245544E & 0x7FFF_FFFF_FFFF_FFFF
ALERT_BATCH = 1000


@dataclass(slots=True)
class Retired:
    """What one run did; `ran` is False when another process was running it."""

    ran: bool
    made: list[datetime] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    kept_fixes: int = 0
    default_removed: int = 0
    alerts_removed: int = 0


async def retire(*, engine: AsyncEngine, now: datetime, history_retention_days: int,
                 alert_retention_days: int) -> Retired:
    """One run of the job as if the time were `now` (tests move it; the server passes its clock)."""
    async with engine.connect() as connection:
        got = await connection.scalar(sa.select(sa.func.pg_try_advisory_lock(LOCK_KEY)))
        await connection.commit()
        if not got:
            return Retired(ran=False)
        try:
            return await _run(connection, now=now, history_before=now - timedelta(days=history_retention_days),
                              alerts_before=now - timedelta(days=alert_retention_days))
        finally:
            try:
                await connection.rollback()
                await connection.execute(sa.select(sa.func.pg_advisory_unlock(LOCK_KEY)))
                await connection.commit()
            except db.STORAGE_ERRORS as error:  # the session is gone, and its lock with it
                log.debug("retention lock not released: %s", db.describe(error))


async def _run(connection: AsyncConnection, *, now: datetime, history_before: datetime,
               alerts_before: datetime) -> Retired:
    retired = Retired(ran=True)
    try:
        async with connection.begin():
            retired.made = await partitions.make_ahead(connection=connection, now=now)
    except db.STORAGE_ERRORS as error:
        # A lock held elsewhere (an export's snapshot of the default partition) must not stop
        # the drops: new days go to the default partition until the next run makes them.
        log.warning("partitions ahead not made (%s); dropping the expired ones all the same", db.describe(error))
    for partition in await partitions.expired(connection=connection, before=history_before):
        await connection.commit()
        span = {"before": partition.upper, "since": partition.lower}
        async with connection.begin():
            retired.kept_fixes += await record.keep_tracks(connection=connection, **span)
        async with connection.begin():
            await partitions.lock_for_drop(connection=connection)
            retired.kept_fixes += await record.keep_tracks(connection=connection, **span)
            await partitions.drop(connection=connection, partition=partition)
        retired.dropped.append(partition.name)
    await connection.commit()
    async with connection.begin():
        # One snapshot for what is kept and what is removed: a fix arriving meanwhile waits for the next run.
        await connection.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        oldest = await partitions.oldest_in_default(connection=connection)
        if oldest is not None and oldest < history_before:
            retired.kept_fixes += await record.keep_tracks(connection=connection, before=history_before, since=oldest)
        retired.default_removed = await partitions.retire_default(connection=connection, before=history_before)
    while True:
        async with connection.begin():
            removed = await record.remove_ended(connection=connection, ended_before=alerts_before, batch=ALERT_BATCH)
        retired.alerts_removed += removed
        if removed < ALERT_BATCH:
            return retired


class Retention(OwnedTask):
    """The job in a server process: a run at start, then every `retention_interval_s`. Not part
    of /healthz: a run that fails delays retention, not an alert or a ping (which go to the
    default partition if their day's partition could not be made)."""

    task_name = "retention"

    def __init__(self, *, engine: AsyncEngine, settings, clock: Callable[[], datetime] | None = None):
        self._engine = engine
        self._settings = settings
        self._clock = clock or (lambda: datetime.now(timezone.utc))

    async def run_once(self) -> Retired:
        retired = await retire(engine=self._engine, now=self._clock(),
                               history_retention_days=self._settings.history_retention_days,
                               alert_retention_days=self._settings.alert_retention_days)
        if retired.made or retired.dropped or retired.default_removed or retired.alerts_removed:
            log.warning("retention: made %d partitions, dropped %d (%d alert fixes kept), removed %d default "
                        "rows and %d alerts", len(retired.made), len(retired.dropped), retired.kept_fixes,
                        retired.default_removed, retired.alerts_removed)
        self.health.progressed()
        return retired

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except db.STORAGE_ERRORS as error:
                log.error("retention run failed (%s); the next run tries again", db.describe(error))
                self.health.failed(f"retention cannot run ({db.describe(error)})")
            await asyncio.sleep(self._settings.retention_interval_s)
