"""The escalation sweeper: works from PostgreSQL, so a restart loses nothing.

Each sweep escalates the open alerts past their deadline (`alerts.escalate_due`,
which fires each step once even with several processes sweeping) and refreshes
which users' fixes the fan-out relays to consoles.
"""

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from server import alerts, db
from server.fanout import Fanout
from server.ingest import STORAGE_ERRORS, describe
from server.relay import Relay
from server.tasks import OwnedTask

log = logging.getLogger(__name__)


class Sweeper(OwnedTask):
    task_name = "sweeper"

    def __init__(self, *, engine: AsyncEngine, settings, relay: Relay, fanout: Fanout):
        self._engine = engine
        self._settings = settings
        self._relay = relay
        self._fanout = fanout

    async def sweep(self) -> int:
        escalated = await alerts.escalate_due(engine=self._engine, settings=self._settings)
        if escalated:
            log.warning("escalated %d unacknowledged alerts", escalated)
            self._relay.kick()
        async with db.autocommit(self._engine) as connection:
            self._fanout.watch(await alerts.unfinished_by_user(connection=connection))
        self.health.progressed()
        return escalated

    async def _run(self) -> None:
        while True:  # the first sweep ran in the lifespan, before serving
            await asyncio.sleep(self._settings.sweep_interval_s)
            try:
                await self.sweep()
            except STORAGE_ERRORS as error:
                log.error("sweep failed (%s); retrying", describe(error))
                self.health.failed(f"escalation cannot run: storage unavailable ({describe(error)})")
