"""`safe`: the user's answer to `are_you_safe` (or, on a trip not yet overdue, a request for
more time), with the PIN checked and counted as `sos_cancel` checks it (`pins.check`).

The normal PIN and the duress PIN both put the trip back to `active` with its `due_at`
extended the same way, and the phone hears the same answer from the same statements in the
same order. The duress PIN also raises, in that same transaction, a police alert through
the SOS path, marked duress, reason `duress`, which the phone never hears of (its phone
status is `cancelled` from the start; the trip does not name it). A wrong PIN is counted
(committed) before it is refused `forbidden`; too many lock the PINs (`rate_limited`).
"""

import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.accounts import pins
from server.alerts import service as alerts
from server.alerts.relay import Relay
from server.core import refusals, wire
from server.core.config import Settings
from server.core.tables import ALERT_UNFINISHED, trips
from server.core.tables import alerts as alerts_table
from server.trips import service, timers
from server.trips.service import COLUMNS, Listener, Trip, from_row

ANSWERABLE = ("active", "overdue")


def extension_s(extend_s: object, *, settings: Settings) -> float:
    """How long `safe` extends the trip: `extend_s` whole seconds (1 to trip_max_extend_s), or the grace."""
    if extend_s is None:
        return settings.trip_grace_s
    if isinstance(extend_s, bool) or not isinstance(extend_s, int) or not 0 < extend_s <= settings.trip_max_extend_s:
        raise refusals.InvalidField(f"extend_s is whole seconds, 1 to {settings.trip_max_extend_s:.0f}",
                                    field="extend_s")
    return float(extend_s)


async def _duress_alert_open(connection, *, trip_id: uuid.UUID) -> bool:
    return await connection.scalar(sa.select(sa.exists().where(
        alerts_table.c.trip_id == trip_id, alerts_table.c.duress, alerts_table.c.status.in_(ALERT_UNFINISHED))))


def duress_sos_id(trip: Trip) -> uuid.UUID:
    """One duress alert per deadline answered: a retried frame finds the alert it raised."""
    return timers.step_sos_id(trip.trip_id, f"duress:{trip.due_at.isoformat() if trip.due_at else 'none'}")


def answer_frame(trip: Trip) -> dict:
    return {"type": "trip_status", "trip_id": str(trip.trip_id), "status": "active",
            "due_at": None if trip.due_at is None else wire.format_time(trip.due_at)}


async def safe(*, engine: AsyncEngine, settings: Settings, user_id: uuid.UUID, frame: wire.Safe,
               relay: Relay | None = None, listener: Listener | None = None) -> Trip:
    """The trip, active again and extended. Raises NotFound (no such trip of the user's),
    Conflict (the trip is over, or an alert was raised for it), InvalidField (extend_s), and the
    PIN's refusal (Forbidden, RateLimited) after the count of wrong PINs is committed."""
    trip_id = service.trip_id_of(frame.trip_id)
    extend = timedelta(seconds=extension_s(frame.extend_s, settings=settings))
    raised = updated = None
    async with engine.begin() as connection:
        row = (await connection.execute(
            sa.select(*COLUMNS).where(trips.c.trip_id == trip_id, trips.c.user_id == user_id)
            .with_for_update(of=trips))).first()
        if row is None:
            raise refusals.NotFound("no such trip of yours", field="trip_id")
        trip = from_row(row)
        if trip.status not in ANSWERABLE:
            raise refusals.Conflict(f"the trip is {trip.status}", field="trip_id")
        verdict = await pins.check(connection=connection, user_id=user_id, pin=frame.pin,
                                   max_failures=settings.pin_max_failures, lockout_s=settings.pin_lockout_s)
        if verdict in (pins.Verdict.NORMAL, pins.Verdict.DURESS):
            now = datetime.now(UTC)
            due_at = max(trip.due_at or now, now) + extend
            # One duress alert while it lasts: a resent frame (a dropped socket) raises no second.
            if verdict is pins.Verdict.DURESS and not await _duress_alert_open(connection, trip_id=trip_id):
                raised = await alerts.raise_alert(
                    engine=engine, settings=settings, device=timers.as_device(user_id), connection=connection,
                    sos=wire.SosFields(sos_id=str(duress_sos_id(trip)),
                                       note="Duress PIN given in answer to are_you_safe"),
                    reason="duress", duress=True)
            # The trip keeps naming only the alerts its user knows of: the phone can read it.
            updated = from_row((await connection.execute(
                trips.update().where(trips.c.trip_id == trip_id)
                .values(status="active", due_at=due_at, answer_by=None, alert_id=trip.alert_id,
                        updated_at=sa.func.now())
                .returning(*COLUMNS))).one())
    refusal = verdict.refusal()
    if refusal is not None:
        raise refusal
    if raised is not None:
        timers.tell_relay(relay, raised)
    if listener is not None:
        listener.changed(updated)
    return updated
