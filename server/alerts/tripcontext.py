"""The trip an alert was raised during, as the police see it with the alert (issue 10 §5).

An alert raised while its user has an unfinished trip records that trip (`alerts.trip_id`)
and marks it (`status = 'alert'`, its `alert_id`) in the statement that opens the alert,
whatever raised it: the phone's SOS, a duress PIN, or a trip's timer. The alerts package
reads and marks the `trips` table itself (server.trips sits above it); what a trip is and
how it changes otherwise is server.trips' business.

The Alert's `trip` is built in the alerts' one view query (a lateral join), its planned
route cut down for display so that an Alert stays well within a console's frame.
"""

import json
import uuid
from datetime import timedelta

import sqlalchemy as sa

from server.core import wire
from server.core.tables import TRIP_UNFINISHED, trips

# At most this many vertices of a planned route go out with an Alert (about 25 bytes each, beside
# two tracks of up to `alert_track_points` fixes at some 95 bytes each):
# the map needs its shape, not its 10,000 GPX points.
ROUTE_VERTICES_SHOWN = 300
# Decimal places of the coordinates sent: 6 is about 0.1 m.
ROUTE_DECIMALS = 6


def unfinished_trip_of(user_id):
    """The SQL scalar: the user's unfinished trip id, or NULL. A plain read, never waiting on a
    lock; the partial unique index `trips_one_unfinished_per_user` makes it one row at most."""
    return (sa.select(trips.c.trip_id)
            .where(trips.c.user_id == user_id, trips.c.status.in_(TRIP_UNFINISHED))
            .scalar_subquery())


def marking(inserted):
    """A CTE marking the trip of the alert that the CTE `inserted` returned: `alert`, with that
    alert's id; it returns the trip's id and new status (nothing when no alert was inserted or
    it has no trip).

    The trip row is taken with SKIP LOCKED: an SOS never waits on a trip's row lock (the
    ingest or a trip's timer may hold it, and a timer may be the very caller raising this
    alert). A trip locked at that moment is not marked here; the alert still records it, and
    `Raised.trip_marked` tells the caller."""
    held = (sa.select(trips.c.trip_id, inserted.c.alert_id)
            .select_from(trips.join(inserted, trips.c.trip_id == inserted.c.trip_id))
            .where(trips.c.status.in_(TRIP_UNFINISHED))
            .with_for_update(of=trips, skip_locked=True)
            .cte("held_trip"))
    return (trips.update().where(trips.c.trip_id == held.c.trip_id)
            .values(status="alert", alert_id=held.c.alert_id, updated_at=sa.func.now())
            .returning(trips.c.trip_id, trips.c.status)
            .cte("marked_trip"))


async def unmark(connection, *, alert_id, grace_s: float) -> uuid.UUID | None:
    """The user cancelled `alert_id` (either PIN: the phone cannot be told apart): the trip it
    marked goes on, `active`, its timer kept, or restarted from now plus the grace if it had
    run out (the cancel says the user is well, as `safe` would). Returns the trip's id."""
    grace = sa.literal(timedelta(seconds=grace_s), sa.Interval)
    return await connection.scalar(
        trips.update().where(trips.c.alert_id == alert_id, trips.c.status == "alert")
        .values(status="active", alert_id=None, answer_by=None, updated_at=sa.func.now(),
                due_at=sa.case((sa.or_(trips.c.answer_by.is_not(None), trips.c.due_at < sa.func.now()),
                                sa.func.now() + grace), else_=trips.c.due_at))
        .returning(trips.c.trip_id))


def _shown_route(route):
    """The planned route as display GeoJSON text: as it is when short enough, else thinned so
    that consecutive vertices lie at least length / (ROUTE_VERTICES_SHOWN - 2) apart (in the
    route's own degrees), which leaves at most ROUTE_VERTICES_SHOWN of them, both ends kept.
    Linear in the route's size: Douglas-Peucker (ST_Simplify) takes some 20 ms on a 10,000-vertex
    zigzag, and every SOS and console read of the alert would pay it."""
    spacing = sa.func.ST_Length(route) / (ROUTE_VERTICES_SHOWN - 2)
    shown = sa.case((sa.func.ST_NPoints(route) <= ROUTE_VERTICES_SHOWN, route),
                    else_=sa.func.ST_RemoveRepeatedPoints(route, spacing))
    return sa.func.ST_AsGeoJSON(shown, ROUTE_DECIMALS)


def trip_of_each(source, *, marked=None):
    """Per alert of `source` (the alerts table, or the CTE of the insert that opens one): its
    trip's columns, all NULL when it has none. `marked`: the CTE of `marking` in the same
    statement, whose new status the trip shows (the statement's own read of `trips` sees the
    row as it was before it)."""
    status = trips.c.status
    if marked is not None:
        status = sa.func.coalesce(
            sa.select(marked.c.status).where(marked.c.trip_id == trips.c.trip_id).scalar_subquery(), status)
    return (
        sa.select(trips.c.kind.label("trip_kind"), status.label("trip_status"), trips.c.plate.label("trip_plate"),
                  trips.c.driver_name.label("trip_driver_name"), trips.c.vehicle.label("trip_vehicle"),
                  trips.c.started_at.label("trip_started_at"), trips.c.ended_at.label("trip_ended_at"),
                  trips.c.eta.label("trip_eta"), trips.c.expected_return.label("trip_expected_return"),
                  sa.func.ST_Y(trips.c.destination).label("trip_destination_lat"),
                  sa.func.ST_X(trips.c.destination).label("trip_destination_lon"),
                  _shown_route(trips.c.planned_route).label("trip_route"),
                  sa.func.ST_Length(sa.func.geography(trips.c.planned_route)).label("trip_route_m"))
        .where(trips.c.trip_id == source.c.trip_id)
        .correlate(source)
        .lateral("trip")
    )


def trip_of(row, track: list[dict]) -> dict | None:
    """The Alert's `trip`, or None; `track` is its fixes since check-in, oldest first."""
    if row.trip_kind is None:
        return None
    moment = lambda value: None if value is None else wire.format_time(value)
    return {
        "trip_id": str(row.trip_id),
        "kind": row.trip_kind,
        "status": row.trip_status,
        "plate": row.trip_plate,
        "driver_name": row.trip_driver_name,
        "vehicle": row.trip_vehicle,
        "started_at": moment(row.trip_started_at),
        "eta": moment(row.trip_eta),
        "expected_return": moment(row.trip_expected_return),
        "destination": None if row.trip_destination_lat is None else {
            "lat": row.trip_destination_lat, "lon": row.trip_destination_lon},
        "planned_route": None if row.trip_route is None else json.loads(row.trip_route),
        "planned_route_m": None if row.trip_route_m is None else round(row.trip_route_m, 1),
        "track": track,
    }
