"""Trips in PostgreSQL: check in, end, read. The timers that act on them are `trips.timers`.

A user has at most one unfinished trip (`active`, `overdue`, or `alert`: an alert was
raised during it). A partial unique index keeps it so under concurrent check-ins; a
second check-in is refused `conflict` unless it says `replace`, which ends the first
one explicitly in the same transaction. Someone else's trip is `not_found`, exactly like
a trip that does not exist: a trip id tells a stranger nothing.

After each commit, `listener` (this process's trip feed, if any) is told, so phones and
watchers hear the change now; a process that is not told (another one, or a restart)
learns it from PostgreSQL when its watchers connect.
"""

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.core import refusals, wire
from server.core.config import Settings
from server.core.tables import TRIP_UNFINISHED, point, trips
from server.positions import history
from server.trips.checkin import Checkin

MAX_TRACK_POINTS = 10_000
RECENT_TRIPS = 50
NO_END = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Trip:
    trip_id: uuid.UUID
    user_id: uuid.UUID
    kind: str
    status: str
    plate: str | None
    driver_name: str | None
    vehicle: dict | None
    destination: tuple[float, float] | None
    planned_route: dict | None  # GeoJSON LineString
    started_at: datetime
    eta: datetime | None
    expected_return: datetime | None
    due_at: datetime | None
    answer_by: datetime | None
    alert_id: uuid.UUID | None
    ended_at: datetime | None
    updated_at: datetime
    # Off the planned route (`trips.progress`): watchers see `off_route` while it is active.
    off_route: bool = False

    @property
    def unfinished(self) -> bool:
        return self.status in TRIP_UNFINISHED

    def frame(self) -> dict:
        """The trip as its user sees it (the phone, `GET /v1/trips`)."""
        moment = lambda value: None if value is None else wire.format_time(value)  # noqa: E731
        return {
            "trip_id": str(self.trip_id), "kind": self.kind, "status": self.status, "plate": self.plate,
            "driver_name": self.driver_name, "vehicle": self.vehicle,
            "destination": None if self.destination is None else
            {"lat": self.destination[0], "lon": self.destination[1]},
            "planned_route": self.planned_route, "started_at": moment(self.started_at), "eta": moment(self.eta),
            "expected_return": moment(self.expected_return), "due_at": moment(self.due_at),
            "answer_by": moment(self.answer_by), "ended_at": moment(self.ended_at),
            "alert_id": None if self.alert_id is None else str(self.alert_id),
        }


class Listener(Protocol):
    def changed(self, trip: Trip) -> None:
        """A trip's committed change, to tell the phone and the watchers."""


class Listeners:
    """Several listeners as one (the watchers' feed, the trips' own per-fix checks), each told
    of every change in the order they were added."""

    def __init__(self, *listeners: Listener):
        self._listeners = list(listeners)

    def add(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def changed(self, trip: Trip) -> None:
        for listener in self._listeners:
            listener.changed(trip)


COLUMNS = (
    trips.c.trip_id, trips.c.user_id, trips.c.kind, trips.c.status, trips.c.plate, trips.c.driver_name,
    trips.c.vehicle, sa.func.ST_Y(trips.c.destination).label("destination_lat"),
    sa.func.ST_X(trips.c.destination).label("destination_lon"),
    sa.func.ST_AsGeoJSON(trips.c.planned_route).label("planned_route"), trips.c.started_at, trips.c.eta,
    trips.c.expected_return, trips.c.due_at, trips.c.answer_by, trips.c.alert_id, trips.c.ended_at,
    trips.c.updated_at, trips.c.off_route,
)


def from_row(row) -> Trip:
    destination = None if row.destination_lat is None else (row.destination_lat, row.destination_lon)
    return Trip(
        trip_id=row.trip_id, user_id=row.user_id, kind=row.kind, status=row.status, plate=row.plate,
        driver_name=row.driver_name, vehicle=row.vehicle, destination=destination,
        planned_route=None if row.planned_route is None else json.loads(row.planned_route),
        started_at=row.started_at, eta=row.eta, expected_return=row.expected_return, due_at=row.due_at,
        answer_by=row.answer_by, alert_id=row.alert_id, ended_at=row.ended_at, updated_at=row.updated_at,
        off_route=row.off_route)


def line(vertices: list[tuple[float, float]]):
    """(lat, lon) vertices as a PostGIS LineString, SRID 4326 (x = longitude), like `tables.point`;
    one bound WKT parameter however many vertices."""
    wkt = "LINESTRING(" + ", ".join(f"{float(lon)!r} {float(lat)!r}" for lat, lon in vertices) + ")"
    return sa.func.ST_GeomFromText(wkt, 4326)


def trip_id_of(value: object) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise refusals.InvalidField("trip_id must be a UUID", field="trip_id") from None


def _tell(listener: Listener | None, *changed: Trip | None) -> None:
    if listener is not None:
        for trip in changed:
            if trip is not None:
                listener.changed(trip)


async def start(*, engine: AsyncEngine, settings: Settings, user_id: uuid.UUID, checkin: Checkin,
                listener: Listener | None = None) -> Trip:
    """Check in. Raises refusals.Conflict while another trip of the user is unfinished and
    the check-in does not `replace` it."""
    grace = timedelta(seconds=settings.trip_grace_s)
    values = {
        "trip_id": uuid.uuid4(), "user_id": user_id, "kind": checkin.kind, "plate": checkin.plate,
        "driver_name": checkin.driver_name, "vehicle": sa.null() if checkin.vehicle is None else checkin.vehicle, "eta": checkin.eta,
        "expected_return": checkin.expected_return, "due_at": checkin.due_at(grace=grace),
        "destination": None if checkin.destination is None else point(*checkin.destination),
        "planned_route": None if checkin.planned_route is None else line(checkin.planned_route),
    }
    replaced = None
    # A replace races only another check-in of the same user (which then won): once more, then refuse.
    for attempt in range(2 if checkin.replace else 1):
        try:
            async with engine.begin() as connection:
                if checkin.replace:
                    replaced = await _finish(connection, user_id=user_id, status="ended")
                row = (await connection.execute(trips.insert().values(**values).returning(*COLUMNS))).one()
            break
        except IntegrityError:
            if attempt == 1 or not checkin.replace:
                raise refusals.Conflict("another trip is unfinished: end it, or start with replace: true"
                                        if not checkin.replace else "another check-in of yours won meanwhile",
                                        field="kind") from None
    trip = from_row(row)
    _tell(listener, replaced, trip)
    return trip


async def _finish(connection: AsyncConnection, *, user_id: uuid.UUID, status: str,
                  trip_id: uuid.UUID | None = None) -> Trip | None:
    """End the user's unfinished trip (that one only, with `trip_id`), in the caller's transaction."""
    where = [trips.c.user_id == user_id, trips.c.status.in_(TRIP_UNFINISHED)]
    if trip_id is not None:
        where.append(trips.c.trip_id == trip_id)
    row = (await connection.execute(
        trips.update().where(*where)
        .values(status=status, ended_at=sa.func.now(), updated_at=sa.func.now(), due_at=None, answer_by=None)
        .returning(*COLUMNS))).first()
    return None if row is None else from_row(row)


async def end(*, engine: AsyncEngine, user_id: uuid.UUID, trip_id: object,
              listener: Listener | None = None) -> Trip:
    """The user ends their trip. Raises NotFound (no such trip of theirs) or Conflict (over already)."""
    trip_id = trip_id_of(trip_id)
    async with engine.begin() as connection:
        ended = await _finish(connection, user_id=user_id, status="ended", trip_id=trip_id)
        if ended is None:
            status = await connection.scalar(
                sa.select(trips.c.status).where(trips.c.trip_id == trip_id, trips.c.user_id == user_id))
            if status is None:
                raise refusals.NotFound("no such trip of yours", field="trip_id")
            raise refusals.Conflict(f"the trip is already {status}", field="trip_id")
    _tell(listener, ended)
    return ended


async def get(*, connection: AsyncConnection, user_id: uuid.UUID, trip_id: object) -> Trip:
    """The user's own trip, or refusals.NotFound."""
    row = (await connection.execute(
        sa.select(*COLUMNS).where(trips.c.trip_id == trip_id_of(trip_id), trips.c.user_id == user_id))).first()
    if row is None:
        raise refusals.NotFound("no such trip of yours", field="trip_id")
    return from_row(row)


async def by_id(*, connection: AsyncConnection, trip_id: uuid.UUID) -> Trip | None:
    row = (await connection.execute(sa.select(*COLUMNS).where(trips.c.trip_id == trip_id))).first()
    return None if row is None else from_row(row)


async def unfinished(*, connection: AsyncConnection, user_id: uuid.UUID) -> Trip | None:
    row = (await connection.execute(
        sa.select(*COLUMNS).where(trips.c.user_id == user_id, trips.c.status.in_(TRIP_UNFINISHED)))).first()
    return None if row is None else from_row(row)


async def recent(*, connection: AsyncConnection, user_id: uuid.UUID, limit: int = RECENT_TRIPS) -> list[Trip]:
    """The user's trips, newest first."""
    rows = await connection.execute(
        sa.select(*COLUMNS).where(trips.c.user_id == user_id).order_by(trips.c.started_at.desc()).limit(limit))
    return [from_row(row) for row in rows]


async def track(*, connection: AsyncConnection, trip: Trip, limit: int = MAX_TRACK_POINTS,
                until: datetime | None = None) -> list[history.StoredFix]:
    """The fixes of the trip (device time from its start to its end, or to `until` if sooner),
    oldest first: its logged route. Nothing from before the check-in, nothing after the end."""
    end_at = trip.ended_at or NO_END
    if until is not None:
        end_at = min(end_at, until)
    return await history.track(connection=connection, user_id=trip.user_id, since=trip.started_at,
                               until=end_at, limit=limit)
