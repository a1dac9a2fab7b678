"""The escalation sweeper: works from PostgreSQL, so a restart loses nothing.

Each sweep escalates the open alerts past their deadline (`alerts.escalate_due`,
which fires each step once even with several processes sweeping), refreshes which
users' fixes the fan-out relays to consoles, and checks that Redis still holds the
hot state: one restarted empty or flushed while serving is rebuilt from PostgreSQL
(DESIGN rule 1), in a task of its own so that a long rebuild never delays an escalation.
"""

import asyncio
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncEngine

from server.alerts import service as alerts
from server.core import db
from server.positions import hotstate
from server.alerts.fanout import Fanout
from server.alerts.relay import Relay
from server.core.tasks import OwnedTask, cancel_and_wait

log = logging.getLogger(__name__)

REDIS_ERRORS = (RedisError, OSError, TimeoutError)


class Sweeper(OwnedTask):
    task_name = "sweeper"

    def __init__(self, *, engine: AsyncEngine, redis: Redis, settings, relay: Relay, fanout: Fanout):
        self._engine = engine
        self._redis = redis
        self._settings = settings
        self._relay = relay
        self._fanout = fanout
        self._rebuilding: asyncio.Task | None = None

    async def sweep(self) -> int:
        escalated = await alerts.escalate_due(engine=self._engine, settings=self._settings, relay=self._relay)
        if escalated:
            log.warning("escalated %d unacknowledged alerts", escalated)
        async with db.autocommit(self._engine) as connection:
            self._fanout.watch(await alerts.unfinished_by_user(connection=connection))
        await self._check_hot_state()
        self.health.progressed()
        return escalated

    async def _check_hot_state(self) -> None:
        if self._rebuilding is not None and not self._rebuilding.done():
            return
        try:
            async with asyncio.timeout(1.0):
                ready = await hotstate.is_ready(redis=self._redis)
        except REDIS_ERRORS as error:
            log.debug("hot state not checked: %s", db.describe(error))
            return
        if not ready:
            log.warning("Redis lost the hot state while serving; rebuilding it from PostgreSQL")
            self._rebuilding = asyncio.create_task(self._rebuild(), name="hot-state-rebuild")

    async def _rebuild(self) -> None:
        try:
            count = await hotstate.rebuild(redis=self._redis, engine=self._engine)
        except (*REDIS_ERRORS, *db.STORAGE_ERRORS) as error:
            log.error("hot state rebuild failed (%s); the next sweep tries again", db.describe(error))
            return
        log.warning("hot state rebuilt from PostgreSQL: %d last locations", count)

    async def close(self) -> None:
        await super().close()
        await cancel_and_wait(self._rebuilding)

    async def _run(self) -> None:
        while True:  # the first sweep ran in the lifespan, before serving
            await asyncio.sleep(self._settings.sweep_interval_s)
            try:
                await self.sweep()
            except db.STORAGE_ERRORS as error:
                log.error("sweep failed (%s); retrying", db.describe(error))
                self.health.failed(f"escalation cannot run: storage unavailable ({db.describe(error)})")
