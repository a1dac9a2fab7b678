"""A trip as its watchers see it, and nothing more (DESIGN rule 8).

Each frame is built from a list of the fields a watcher may see, never by passing a
trip on: no user, no trip or alert id, no PIN timers, nothing of the police's view. The
track holds the trip's own plausible fixes only, from its start to its end or the
link's expiry, whichever is first.
"""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core import wire
from server.core.tables import pings
from server.sharing.links import Share
from server.trips import service

# The newest fixes of the trip a watcher is sent on connect (a day's hike at 1 Hz holds more):
# enough for the line on a map, under 200 KB.
TRACK_POINTS = 2000
# A status after which nothing moves any more.
FINAL = ("arrived", "ended")


def watch_status(trip: service.Trip) -> str:
    """The status a watcher is told: the trip's own, or `off_route` while an active hike strays
    (the off-route rule sets the trip's `off_route` flag, where the trip carries it)."""
    if trip.status == "active" and getattr(trip, "off_route", False):
        return "off_route"
    return trip.status


def _moment(value: datetime | None) -> str | None:
    return None if value is None else wire.format_time(value)


def until(trip: service.Trip, share: Share) -> datetime:
    """The last device time of a fix this link shows: the trip's end or the link's expiry."""
    return share.expires_at if trip.ended_at is None else min(trip.ended_at, share.expires_at)


async def track(*, connection: AsyncConnection, trip: service.Trip, share: Share,
                limit: int = TRACK_POINTS) -> list[dict]:
    """The trip's newest `limit` plausible fixes, oldest first, as `{lat, lon, acc, ts}`."""
    rows = await connection.execute(
        sa.select(sa.func.ST_Y(pings.c.location).label("lat"), sa.func.ST_X(pings.c.location).label("lon"),
                  pings.c.accuracy_m, pings.c.device_ts)
        .where(pings.c.user_id == trip.user_id, pings.c.device_ts >= trip.started_at,
               pings.c.device_ts <= until(trip, share), pings.c.suspect.is_(None))
        .order_by(pings.c.device_ts.desc(), pings.c.seq.desc())
        .limit(limit))
    return [{"lat": row.lat, "lon": row.lon, "acc": row.accuracy_m, "ts": wire.format_time(row.device_ts)}
            for row in reversed(rows.all())]


def trip_frame(trip: service.Trip, share: Share, fixes: list[dict]) -> dict:
    """The watcher's first frame. `updated_at`: the newest of the trip's last change and its last fix."""
    newest = max([trip.updated_at, *(datetime.fromisoformat(fix["ts"]) for fix in fixes[-1:])])
    return {
        "type": "trip", "kind": trip.kind, "plate": trip.plate, "driver_name": trip.driver_name,
        "vehicle": trip.vehicle, "status": watch_status(trip),
        "destination": None if trip.destination is None else
        {"lat": trip.destination[0], "lon": trip.destination[1]},
        "planned_route": trip.planned_route, "started_at": _moment(trip.started_at),
        "eta": _moment(trip.eta), "expected_return": _moment(trip.expected_return),
        "ended_at": _moment(trip.ended_at), "expires_at": _moment(share.expires_at),
        "track": fixes, "updated_at": _moment(newest),
    }


def status_frame(trip: service.Trip) -> dict:
    """A trip change as the hub carries it: what its phone is told (`phone`), what its watchers are
    told (`status`), and what other processes' feeds keep (the times)."""
    trip_id = str(trip.trip_id)
    return {
        "phone": {"type": "trip_status", "trip_id": trip_id, "status": trip.status, "due_at": _moment(trip.due_at),
                  "answer_by": _moment(trip.answer_by)},
        "status": watch_status(trip), "unfinished": trip.unfinished, "started_at": _moment(trip.started_at),
        "ended_at": _moment(trip.ended_at), "updated_at": _moment(trip.updated_at),
    }
