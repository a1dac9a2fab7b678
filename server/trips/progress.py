"""Per-fix checks of unfinished trips: a taxi ride that reached its destination ends by itself
(`arrived`), a hiker off the planned route is noticed (`off_route`, and back).

The ingest calls `on_moved` after each flush with the users whose last location moved. Only
users with an unfinished trip are looked at, from an in-memory map of them (`followed`)
refreshed by every sweep (`refresh`) and by every change this process commits (`changed`);
everyone else costs a dictionary lookup. What a fix changes is written to PostgreSQL
(`near_destination_since`, `off_route`, `off_route_fixes`), and only when it changes, so a
phone that reconnects to another process carries on from the same state, and a fix that
changes nothing costs no round trip.

Only plausible fixes move a last location (a suspect one is stored and moves nothing), so
every fix seen here is plausible: an implausible fix neither counts towards off-route nor
resets the count, as `geo.route.observe` wants. A planned route's `geo.route.Route` (its
STRtree) is built once per trip and kept while the trip is unfinished.
"""

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from geo import route as routes
from geo.distance import haversine_m
from geo.fix import Fix
from geo.rules import Reason
from server.alerts import outbox
from server.alerts.fanout import Fanout
from server.alerts.relay import Relay
from server.core import db
from server.core.config import Settings
from server.core.tables import (
    ALERT_UNFINISHED,
    TRIP_UNFINISHED,
    alert_notes,
    alerts,
    trips,
)
from server.trips.service import COLUMNS, Listener, Trip, from_row

log = logging.getLogger(__name__)

# A ride still running may arrive; one with an alert raised is the police's to follow.
ARRIVING = ("active", "overdue")
NOTE_AUTHOR = "guardian"


@dataclass(slots=True)
class Followed:
    trip_id: uuid.UUID
    kind: str
    status: str
    destination: tuple[float, float] | None
    has_route: bool
    started_at: datetime
    near_since: datetime | None = None
    standing: routes.OffRoute = field(default_factory=routes.OffRoute)

    @property
    def may_arrive(self) -> bool:
        return self.kind == "taxi" and self.destination is not None and self.status in ARRIVING


def arrived_frame(trip_id: uuid.UUID) -> dict:
    return {"type": "trip_arrived", "trip_id": str(trip_id)}


class Progress:
    def __init__(self, *, engine: AsyncEngine, settings: Settings, fanout: Fanout, relay: Relay,
                 listener: Listener | None = None):
        self._engine = engine
        self._settings = settings
        self._fanout = fanout
        self._relay = relay
        self._listener = listener
        self._limits = routes.OffRouteLimits(threshold_m=settings.trip_off_route_m,
                                             fixes=settings.trip_off_route_fixes)
        self.followed: dict[uuid.UUID, Followed] = {}
        self._routes: dict[uuid.UUID, routes.Route] = {}
        # Changes heard while a refresh reads: newer than what it read.
        self._heard: dict[uuid.UUID, Trip] = {}

    def follows(self, user_id: uuid.UUID) -> bool:
        return user_id in self.followed

    def changed(self, trip: Trip) -> None:
        """A committed change of a trip (this process's): follow it while unfinished."""
        self._heard[trip.user_id] = trip
        self._merge(trip)

    def _merge(self, trip: Trip) -> None:
        current = self.followed.get(trip.user_id)
        if not trip.unfinished:
            if current is not None and current.trip_id == trip.trip_id:
                del self.followed[trip.user_id]
            self._routes.pop(trip.trip_id, None)
            return
        if current is not None and current.trip_id == trip.trip_id:
            current.status = trip.status
            return
        self.followed[trip.user_id] = Followed(trip.trip_id, trip.kind, trip.status, trip.destination,
                                               trip.planned_route is not None, trip.started_at,
                                               standing=routes.OffRoute(trip.off_route, 0))

    async def refresh(self) -> None:
        """Read every unfinished trip (each sweep): what other processes started and ended."""
        self._heard = {}
        async with db.autocommit(self._engine) as connection:
            rows = (await connection.execute(
                sa.select(trips.c.trip_id, trips.c.user_id, trips.c.kind, trips.c.status,
                          sa.func.ST_Y(trips.c.destination).label("lat"), sa.func.ST_X(trips.c.destination).label("lon"),
                          (trips.c.planned_route.is_not(None)).label("has_route"), trips.c.near_destination_since,
                          trips.c.started_at, trips.c.off_route, trips.c.off_route_fixes)
                .where(trips.c.status.in_(TRIP_UNFINISHED)))).all()
        followed = {row.user_id: Followed(
            row.trip_id, row.kind, row.status, None if row.lat is None else (row.lat, row.lon), row.has_route,
            row.started_at, row.near_destination_since, routes.OffRoute(row.off_route, row.off_route_fixes)) for row in rows}
        self.followed = followed
        for trip in self._heard.values():
            self._merge(trip)
        kept = {entry.trip_id for entry in followed.values()}
        for trip_id in [trip_id for trip_id in self._routes if trip_id not in kept]:
            del self._routes[trip_id]

    async def on_moved(self, moved: Sequence[tuple[uuid.UUID, Fix]]) -> None:
        """After a flush: the checks of each user with an unfinished trip. Never raises for
        storage: the next fix checks again from what PostgreSQL holds."""
        if not self.followed:
            return
        for user_id, fix in moved:
            entry = self.followed.get(user_id)
            if entry is None or fix.ts < entry.started_at:  # a fix from before the check-in is no part of it
                continue
            try:
                if entry.may_arrive:
                    await self._arrival(user_id, entry, fix)
                if entry.has_route and self.followed.get(user_id) is entry:
                    await self._off_route(user_id, entry, fix)
            except db.STORAGE_ERRORS as error:
                log.warning("trip progress not checked (%s); the next fix checks again", db.describe(error))

    async def _arrival(self, user_id: uuid.UUID, entry: Followed, fix: Fix) -> None:
        radius_m = self._settings.trip_arrival_radius_m
        near = haversine_m(fix.lat, fix.lon, *entry.destination) <= radius_m
        if not near:
            if entry.near_since is not None:
                entry.near_since = None
                async with self._engine.begin() as connection:
                    await connection.execute(trips.update().where(trips.c.trip_id == entry.trip_id)
                                             .values(near_destination_since=None))
            return
        dwell = timedelta(seconds=self._settings.trip_arrival_dwell_s)
        async with self._engine.begin() as connection:
            if entry.near_since is None:
                entry.near_since = await connection.scalar(
                    trips.update().where(trips.c.trip_id == entry.trip_id, trips.c.status.in_(ARRIVING))
                    .values(near_destination_since=sa.func.coalesce(trips.c.near_destination_since, fix.ts))
                    .returning(trips.c.near_destination_since))
            if entry.near_since is None or fix.ts - entry.near_since < dwell:
                return
            row = (await connection.execute(
                trips.update().where(trips.c.trip_id == entry.trip_id, trips.c.status.in_(ARRIVING),
                                     trips.c.near_destination_since <= fix.ts - dwell)
                .values(status="arrived", ended_at=sa.func.now(), updated_at=sa.func.now(), due_at=None,
                        answer_by=None)
                .returning(*COLUMNS))).first()
        if row is None:
            return
        trip = from_row(row)
        log.info("trip %s arrived at its destination", trip.trip_id)
        self._merge(trip)
        if self._listener is not None:
            self._listener.changed(trip)
        await self._fanout.publish_to_phone(user_id=str(user_id), frame=arrived_frame(trip.trip_id))

    async def _route(self, trip_id: uuid.UUID) -> routes.Route | None:
        found = self._routes.get(trip_id)
        if found is None:
            async with db.autocommit(self._engine) as connection:
                geojson = await connection.scalar(
                    sa.select(sa.func.ST_AsGeoJSON(trips.c.planned_route)).where(trips.c.trip_id == trip_id))
            vertices = None if geojson is None else routes.vertices_from_geojson(json.loads(geojson))
            if vertices is None or isinstance(vertices, Reason):
                return None
            found = self._routes[trip_id] = routes.Route(vertices)
        return found

    async def _off_route(self, user_id: uuid.UUID, entry: Followed, fix: Fix) -> None:
        route = await self._route(entry.trip_id)
        if route is None:
            entry.has_route = False
            return
        far = route.farther_than(fix.lat, fix.lon, self._limits.threshold_m)
        standing, turn = routes.observe_far(entry.standing, far=far, plausible=True, limits=self._limits)
        if standing == entry.standing:
            return
        entry.standing = standing
        async with self._engine.begin() as connection:
            row = (await connection.execute(
                trips.update().where(trips.c.trip_id == entry.trip_id, trips.c.status.in_(TRIP_UNFINISHED))
                .values(off_route=standing.off_route, off_route_fixes=standing.far_fixes,
                        **({"updated_at": sa.func.now()} if turn else {}))
                .returning(*COLUMNS))).first()
            noted = 0 if row is None or turn is None else await self._note(connection, user_id, turn)
        if row is None or turn is None:
            return
        log.info("trip %s: %s", entry.trip_id, turn.value)
        if noted:
            self._relay.kick()
        if self._listener is not None:
            self._listener.changed(from_row(row))

    async def _note(self, connection, user_id: uuid.UUID, turn: routes.Turn) -> int:
        """The turn, as a note on each unfinished alert of the user (consoles get `alert_updated`)."""
        if turn is routes.Turn.OFF_ROUTE:
            text = (f"Off the planned route: more than {self._limits.threshold_m:g} m from it for "
                    f"{self._limits.fixes} fixes in a row")
        else:
            text = "Back on the planned route"
        alert_ids = list(await connection.scalars(
            sa.select(alerts.c.alert_id).where(alerts.c.user_id == user_id, alerts.c.status.in_(ALERT_UNFINISHED))))
        for alert_id in alert_ids:
            await connection.execute(alert_notes.insert().values(alert_id=alert_id, author=NOTE_AUTHOR, text=text))
            await connection.execute(alerts.update().where(alerts.c.alert_id == alert_id)
                                     .values(updated_at=sa.func.now()))
            await outbox.add(connection=connection, settings=self._settings, alert_id=alert_id, kind="updated")
        return len(alert_ids)
