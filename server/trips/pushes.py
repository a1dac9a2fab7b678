"""The push to a user's emergency contacts who have the app when the user's trip is overdue.

Delivered from the trips' outbox (`trips.events`, committed with the overdue step) by the
alerts' own `delivery.Worker`, through this process's FCM channel (the relay's), at least
once: a row is done once FCM took it or after five tries of the tokens it kept refusing.
"""

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.fcm import FcmChannel
from server.alerts import outbox, relay
from server.alerts.delivery import Worker
from server.core import db
from server.core.config import Settings
from server.core.tables import trips
from server.trips import events

MAX_ATTEMPTS = 5


class ContactPushes:
    def __init__(self, *, engine: AsyncEngine, settings: Settings, fcm: FcmChannel):
        self._engine = engine
        self._fcm = fcm
        self.worker = Worker(channel=events.PUSH, engine=engine, settings=settings, deliver=self._push,
                             queue=events, name="trip-push")

    def start(self) -> None:
        self.worker.start()

    def kick(self) -> None:
        self.worker.kick()

    async def close(self) -> None:
        await self.worker.close()

    async def _push(self, rows: list[events.Row]):
        done, retry = [], {}
        async with db.autocommit(self._engine) as connection:
            found = {row.trip_id: row for row in await connection.execute(
                sa.select(trips.c.trip_id, trips.c.user_id, trips.c.kind)
                .where(trips.c.trip_id.in_({row.trip_id for row in rows})))}
            tokens = {user_id: await relay.contact_tokens(connection=connection, user_id=user_id)
                      for user_id in {trip.user_id for trip in found.values()}}
        for row in rows:
            trip = found.get(row.trip_id)
            if trip is None:
                done.append(row.id)
                continue
            data = {"type": "trip_overdue", "trip_id": str(row.trip_id), "kind": trip.kind}
            result = await self._fcm.send(tokens=sorted(set(tokens[trip.user_id])), data=data)
            if result.dead_tokens:
                await relay.forget_tokens(engine=self._engine, dead=result.dead_tokens)
            if result.retry_tokens and row.attempts < MAX_ATTEMPTS:
                retry.setdefault(result.retry_after_s or outbox.backoff_s(row.attempts), []).append(row.id)
            else:
                done.append(row.id)
        return done, retry
