"""The audit log of dispatchers' reads, group-committed, committed before the read happens.

A console records a row (who, which alert, when, in what context) and waits for it
to be committed before it sends the frame that shows the location (DESIGN rule 8):
a frame that was sent has its row, even after a crash. An SOS reaching twenty
consoles would cost twenty transactions; instead rows from all consoles of this
process are gathered for a few milliseconds and committed as one statement, and
every console waiting on that statement goes on together. Rows are never dropped:
while PostgreSQL cannot take them they wait, and so do the frames they audit (each
console waits for its own rows only, so the backlog is bounded by the consoles: a
console whose mailbox fills meanwhile is disconnected and gets a fresh snapshot).
"""

import asyncio
import logging

from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from server.core import db
from server.core.tables import audit_reads
from server.core.tasks import OwnedTask

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.003
RETRY_DELAY_S = 0.5
# Rows PostgreSQL will never take (their staff member or alert is gone): retrying would hold
# every console of the process behind them.
REFUSED_ERRORS = (IntegrityError, DataError)


class AuditRefused(Exception):
    """PostgreSQL refused these rows for what they hold: the reads they audit must not happen."""


class AuditLog(OwnedTask):
    task_name = "audit-log"

    def __init__(self, *, engine: AsyncEngine):
        self._engine = engine
        self._pending: list[tuple[list[dict], asyncio.Future]] = []
        self._wake = asyncio.Event()

    async def close(self) -> None:
        await super().close()
        if self._pending:
            await self._flush()
        for _, committed in self._pending:
            committed.cancel()

    async def record(self, rows: list[dict]) -> None:
        """Commit rows of audit_reads with the next group commit; returns once they are committed,
        raises AuditRefused if PostgreSQL never will. Cancelling the wait does not withdraw the
        rows (a read may be recorded and not shown, never the reverse)."""
        if not rows:
            return
        committed = asyncio.get_running_loop().create_future()
        self._pending.append((rows, committed))
        self._wake.set()
        await asyncio.shield(committed)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(FLUSH_INTERVAL_S)
            self._wake.clear()
            if not await self._flush():
                await asyncio.sleep(RETRY_DELAY_S)
                self._wake.set()

    async def _flush(self) -> bool:
        if not self._pending:
            return True
        batch, self._pending = self._pending, []
        try:
            await self._insert([row for rows, _ in batch for row in rows])
        except REFUSED_ERRORS:
            # One console's rows must not fail the others': each is tried on its own.
            return await self._flush_each(batch)
        except db.STORAGE_ERRORS as error:
            log.error("audit log: %d reads not yet recorded (%s); their frames wait, retrying",
                      sum(len(rows) for rows, _ in batch), db.describe(error))
            self._pending[:0] = batch
            return False
        for _, committed in batch:
            if not committed.done():
                committed.set_result(None)
        return True

    async def _flush_each(self, batch: list[tuple[list[dict], asyncio.Future]]) -> bool:
        for index, (rows, committed) in enumerate(batch):
            try:
                await self._insert(rows)
            except REFUSED_ERRORS as error:
                log.error("audit log: %d reads refused (%s); not shown", len(rows), db.describe(error))
                if not committed.done():
                    committed.set_exception(AuditRefused(db.describe(error)))
                continue
            except db.STORAGE_ERRORS as error:
                log.error("audit log: reads not yet recorded (%s); retrying", db.describe(error))
                self._pending[:0] = batch[index:]
                return False
            if not committed.done():
                committed.set_result(None)
        return True

    async def _insert(self, rows: list[dict]) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(pg.insert(audit_reads), rows)
