"""The audit log of dispatchers' reads, group-committed.

Every console that is shown an alert records one row (who, which alert, when). An
SOS reaching twenty consoles would cost twenty transactions; instead rows from all
consoles of this process are gathered for a few milliseconds and committed as one
statement. A console queues its rows and shows the alert without waiting: reaching a
dispatcher comes first, and a console stalled on a busy pool would delay every alert
after it. If PostgreSQL cannot take the rows they wait, bounded, for the next attempt.
"""

import asyncio
import logging

from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncEngine

from server.ingest import STORAGE_ERRORS, describe
from server.tables import audit_reads
from server.tasks import OwnedTask

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.003
MAX_PENDING_ROWS = 100_000


class AuditLog(OwnedTask):
    task_name = "audit-log"

    def __init__(self, *, engine: AsyncEngine):
        self._engine = engine
        self._rows: list[dict] = []
        self._wake = asyncio.Event()

    async def close(self) -> None:
        await super().close()
        if self._rows:
            await self._flush()

    def add(self, rows: list[dict]) -> None:
        """Queue rows of audit_reads for the next group commit (within milliseconds)."""
        if len(self._rows) + len(rows) > MAX_PENDING_ROWS:
            log.error("audit log backlog full: %d reads not recorded", len(rows))
            return
        self._rows.extend(rows)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(FLUSH_INTERVAL_S)
            self._wake.clear()
            if not await self._flush():
                await asyncio.sleep(1.0)
                self._wake.set()

    async def _flush(self) -> bool:
        if not self._rows:
            return True
        rows, self._rows = self._rows, []
        try:
            async with self._engine.begin() as connection:
                await connection.execute(pg.insert(audit_reads), rows)
        except STORAGE_ERRORS as error:
            log.error("audit log: %d reads not yet recorded (%s); retrying", len(rows), describe(error))
            self._rows[:0] = rows
            return False
        return True
