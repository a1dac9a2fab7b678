"""Whose fixes go where, in a process that runs no sweepers (the phones role).

The ingest's hooks relay fixes by in-memory maps: the fan-out's unfinished alerts (to
consoles, as `alert_location`) and the trips' per-fix checks' unfinished trips. In one
process the sweeper and the trips' timers refresh those maps from PostgreSQL each sweep;
the events heard on Redis keep them current in between. A phones process hears the same
events but sweeps nothing, so this task does the reads alone, at the same interval: an
alert opened or a trip started in another process while this one's subscription was
lost is followed at the next read at the latest.
"""

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from server.alerts import service as alerts
from server.alerts.fanout import Fanout
from server.core import db
from server.core.tasks import OwnedTask

log = logging.getLogger(__name__)


class AlertWatch(OwnedTask):
    task_name = "alert-watch"

    def __init__(self, *, engine: AsyncEngine, fanout: Fanout, progress, interval_s: float):
        """`progress`: the trips' per-fix checks (`trips.progress.Progress`)."""
        self._engine = engine
        self._fanout = fanout
        self._progress = progress
        self._interval_s = interval_s

    async def read(self) -> None:
        async with db.autocommit(self._engine) as connection:
            self._fanout.watch(await alerts.unfinished_by_user(connection=connection))
        await self._progress.refresh()
        self.health.progressed()

    async def _run(self) -> None:
        while True:  # the first read ran in the lifespan, before serving
            await asyncio.sleep(self._interval_s)
            try:
                await self.read()
            except db.STORAGE_ERRORS as error:
                log.error("alert watch not refreshed (%s); retrying", db.describe(error))
                self.health.failed(f"alert users' fixes may not reach consoles: storage unavailable "
                                   f"({db.describe(error)})")
