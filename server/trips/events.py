"""The trips' outbox (`trip_events`): what a step of a trip's timers still has to deliver, the
push to the user's emergency contacts when the trip is overdue.

`add` is called in the step's own transaction, so the event exists exactly when the step is
committed (persist, then notify). The rows are worked by the alerts' `delivery.Worker`, for
which this module is the queue: `lease`, `renew`, `complete` and `postpone` as the alerts'
outbox has them, over this table.
"""

import uuid
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core.tables import trip_events

PUSH = "push"
OVERDUE = "overdue"


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    trip_id: uuid.UUID
    kind: str
    attempts: int


async def add(*, connection: AsyncConnection, trip_ids: list[uuid.UUID], kind: str) -> None:
    if trip_ids:
        await connection.execute(trip_events.insert(),
                                 [{"trip_id": trip_id, "kind": kind, "channel": PUSH} for trip_id in trip_ids])


async def lease(*, connection: AsyncConnection, channel: str, lease_s: float, limit: int,
                targets: list[str] | None = None) -> list[Row]:
    """Take up to `limit` due rows of a channel, oldest first, for `lease_s` seconds (`targets`:
    the worker's signature; trip events have none)."""
    due = (sa.select(trip_events.c.id)
           .where(trip_events.c.channel == channel, trip_events.c.done_at.is_(None),
                  trip_events.c.due_at <= sa.func.now())
           .order_by(trip_events.c.id).limit(limit).with_for_update(skip_locked=True))
    result = await connection.execute(
        trip_events.update().where(trip_events.c.id.in_(due.scalar_subquery()))
        .values(due_at=sa.func.now() + timedelta(seconds=lease_s), attempts=trip_events.c.attempts + 1)
        .returning(trip_events.c.id, trip_events.c.trip_id, trip_events.c.kind, trip_events.c.attempts))
    return sorted((Row(*row) for row in result), key=lambda row: row.id)


async def renew(*, connection: AsyncConnection, ids: list[int], lease_s: float) -> None:
    if ids:
        await connection.execute(trip_events.update().where(trip_events.c.id.in_(ids), trip_events.c.done_at.is_(None))
                                 .values(due_at=sa.func.now() + timedelta(seconds=lease_s)))


async def complete(*, connection: AsyncConnection, ids: list[int]) -> None:
    if ids:
        await connection.execute(trip_events.update().where(trip_events.c.id.in_(ids)).values(done_at=sa.func.now()))


async def postpone(*, connection: AsyncConnection, ids: list[int], delay_s: float) -> None:
    if ids:
        await connection.execute(trip_events.update().where(trip_events.c.id.in_(ids))
                                 .values(due_at=sa.func.now() + timedelta(seconds=delay_s)))
