"""A trip's timers: overdue, then a police alert when `are_you_safe` goes unanswered.

Both steps run from PostgreSQL state under row locks (`FOR UPDATE SKIP LOCKED`, like the
alerts' escalation), each in the transaction that records it, so with several processes
sweeping each step fires once, and a restart between steps neither loses nor repeats one:

1. overdue: an `active` trip past its `due_at` becomes `overdue`, with `answer_by` (now +
   `trip_answer_s`) and a push event for the user's emergency contacts (`trips.events`),
   committed together. Then the phone is asked `are_you_safe` (live, on every process, and
   again whenever it connects while the trip is overdue) and the listener is told.
2. no answer: an `overdue` trip past its `answer_by` raises a police alert through the SOS
   path itself (`alerts.service.raise_alert`: routed by the last location, committed with its
   outbox, on the consoles, escalated), reason `overdue`, in the same transaction that turns
   the trip to `alert`. Its `sos_id` is derived from the trip (`step_sos_id`): were the alert
   committed and the trip not, the retry would find the same alert, never open a second.

The sweep takes `now`, so tests can run it at any time they choose.
"""

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.accounts.auth import Device
from server.alerts import service as alerts
from server.alerts.fanout import Fanout
from server.alerts.relay import Relay
from server.core import db, wire
from server.core.config import Settings
from server.core.tables import trips
from server.core.tasks import OwnedTask
from server.trips import events, service
from server.trips.service import COLUMNS, Listener, Trip, from_row

log = logging.getLogger(__name__)

# An alert a timer raises is no phone's SOS: it names no device.
NO_DEVICE = uuid.UUID(int=0)
NO_ANSWER = "no_answer"


def step_sos_id(trip_id: uuid.UUID, step: str) -> uuid.UUID:
    """The sos_id of the alert a step of this trip raises: the same however often it runs."""
    return uuid.uuid5(trip_id, step)


def are_you_safe(trip: Trip) -> dict:
    return {"type": "are_you_safe", "trip_id": str(trip.trip_id), "deadline": wire.format_time(trip.answer_by)}


def as_device(user_id: uuid.UUID) -> Device:
    return Device(device_id=NO_DEVICE, user_id=user_id)


async def mark_overdue(*, engine: AsyncEngine, settings: Settings, now: datetime, limit: int = 100) -> list[Trip]:
    """Step 1 for up to `limit` active trips due by `now`: overdue, with their deadline and their
    contacts' push event, in one transaction. Returns the trips changed."""
    due = (sa.select(trips.c.trip_id).where(trips.c.status == "active", trips.c.due_at <= now)
           .order_by(trips.c.due_at).limit(limit).with_for_update(skip_locked=True))
    async with engine.begin() as connection:
        rows = (await connection.execute(
            trips.update().where(trips.c.trip_id.in_(due.scalar_subquery()))
            .values(status="overdue", answer_by=now + timedelta(seconds=settings.trip_answer_s),
                    updated_at=sa.func.now())
            .returning(*COLUMNS))).all()
        changed = [from_row(row) for row in rows]
        await events.add(connection=connection, trip_ids=[trip.trip_id for trip in changed], kind=events.OVERDUE)
    return changed


async def raise_unanswered(*, engine: AsyncEngine, settings: Settings, now: datetime,
                           limit: int = 50) -> list[tuple[Trip, alerts.Raised]]:
    """Step 2 for up to `limit` overdue trips whose deadline passed by `now`, each in its own
    transaction (one trip that cannot be raised never holds up another's alert). Returns each
    trip changed with its alert; the caller tells the relay (the commit is here)."""
    candidates = list(await _scalars(engine, sa.select(trips.c.trip_id).where(
        trips.c.status == "overdue", trips.c.answer_by <= now).order_by(trips.c.answer_by).limit(limit)))
    raised = []
    for trip_id in candidates:
        try:
            done = await _raise_one(engine=engine, settings=settings, trip_id=trip_id, now=now)
        except db.STORAGE_ERRORS:
            raise
        except Exception:
            log.exception("trip %s: its overdue alert could not be raised; the next sweep tries again", trip_id)
            continue
        if done is not None:
            raised.append(done)
    return raised


async def _scalars(engine: AsyncEngine, query) -> list:
    async with db.autocommit(engine) as connection:
        return list(await connection.scalars(query))


async def _raise_one(*, engine: AsyncEngine, settings: Settings, trip_id: uuid.UUID,
                     now: datetime) -> tuple[Trip, alerts.Raised] | None:
    async with engine.begin() as connection:
        row = (await connection.execute(
            sa.select(*COLUMNS).where(trips.c.trip_id == trip_id, trips.c.status == "overdue",
                                      trips.c.answer_by <= now)
            .with_for_update(of=trips, skip_locked=True))).first()
        if row is None:  # answered, or taken by another process meanwhile
            return None
        trip = from_row(row)
        note = f"Trip overdue: no answer to are_you_safe by {wire.format_time(trip.answer_by)}"
        raised = await alerts.raise_alert(
            engine=engine, settings=settings, device=as_device(trip.user_id), connection=connection,
            sos=wire.SosFields(sos_id=str(step_sos_id(trip.trip_id, NO_ANSWER)), note=note), reason="overdue")
        changed = (await connection.execute(
            trips.update().where(trips.c.trip_id == trip.trip_id)
            .values(status="alert", alert_id=raised.alert_id, answer_by=None, updated_at=sa.func.now())
            .returning(*COLUMNS))).one()
    return from_row(changed), raised


def tell_relay(relay: Relay | None, raised: alerts.Raised) -> None:
    """An alert a trip's transaction committed: to the consoles now (as `raise_alert` does after
    its own commit)."""
    if relay is None:
        return
    if raised.created:
        relay.opened(raised)
    else:
        relay.kick()


class Timers(OwnedTask):
    """Sweeps the trips' timers every `sweep_interval_s`, and refreshes the per-fix checks' list
    of unfinished trips. `pushes`: woken after an overdue step (the contacts' push)."""

    task_name = "trip-timers"

    def __init__(self, *, engine: AsyncEngine, settings: Settings, relay: Relay, fanout: Fanout,
                 listener: Listener | None, progress, pushes=None):
        self._engine = engine
        self._settings = settings
        self._relay = relay
        self._fanout = fanout
        self._listener = listener
        self._progress = progress
        self._pushes = pushes

    async def sweep(self, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        for trip, raised in await raise_unanswered(engine=self._engine, settings=self._settings, now=now):
            log.warning("trip overdue and unanswered: alert %s raised", raised.alert_id)
            tell_relay(self._relay, raised)
            self._tell(trip)
        overdue = await mark_overdue(engine=self._engine, settings=self._settings, now=now)
        if overdue and self._pushes is not None:
            self._pushes.kick()
        for trip in overdue:
            self._tell(trip)
            await self._fanout.publish_to_phone(user_id=str(trip.user_id), frame=are_you_safe(trip))
        await self._progress.refresh()
        self.health.progressed()

    def _tell(self, trip: Trip) -> None:
        if self._listener is not None:
            self._listener.changed(trip)

    async def _run(self) -> None:
        while True:  # the first sweep ran in the lifespan, before serving
            await asyncio.sleep(self._settings.sweep_interval_s)
            try:
                await self.sweep()
            except db.STORAGE_ERRORS as error:
                log.error("trip sweep failed (%s); retrying", db.describe(error))
                self.health.failed(f"trip timers cannot run: storage unavailable ({db.describe(error)})")


async def pending_question(*, engine: AsyncEngine, user_id: uuid.UUID) -> dict | None:
    """The `are_you_safe` the user's phone must hear now: its trip is overdue."""
    async with db.autocommit(engine) as connection:
        trip = await service.unfinished(connection=connection, user_id=user_id)
    return are_you_safe(trip) if trip is not None and trip.status == "overdue" else None
