"""This process's trip feed: what watchers (and a trip's phone) hear live, in every process.

It is the trips' `Listener`: each committed change (`changed`) goes to the hub and, over
the fan-out's Redis channel, to every other process, where the trip's watchers and its
user's phone hear it (the phone only of changes it did not ask for: its own frames are
answered first, since the event leaves after the current step). It knows every user's
unfinished trip (read at start and every sweep, heard from `changed` here and elsewhere,
and from each watcher's first read), so the ingest's fresh fixes of those users go to
their trip's watchers as `trip_location`, none from before the trip started. An alert
opened for a user during their trip tells its watchers `alert` (`trip_alert`), and
nothing else of it.
"""

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from geo.fix import Fix
from notifier.hub import Event
from server.alerts.fanout import Fanout
from server.core import db, wire
from server.core.tables import TRIP_UNFINISHED, trips
from server.core.tasks import OwnedTask
from server.sharing import view
from server.sharing.links import Share
from server.trips import service

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Following:
    """A user's unfinished trip as the feed keeps it."""
    trip_id: str
    started_at: datetime
    updated_at: datetime


def trip_event(type: str, *, trip_id: str, user_id: str, frame: dict) -> Event:
    return Event(type=type, alert_id="", user_id=user_id, precincts=(), frame=frame, trip_id=trip_id)


def status_event(trip: service.Trip) -> Event:
    return trip_event("trip_status", trip_id=str(trip.trip_id), user_id=str(trip.user_id),
                      frame=view.status_frame(trip))


class TripFeed(OwnedTask):
    task_name = "trip-feed"

    def __init__(self, *, engine: AsyncEngine, fanout: Fanout, sweep_interval_s: float):
        self._engine = engine
        self._fanout = fanout
        self._sweep_interval_s = sweep_interval_s
        # user id → their unfinished trip: whose fixes go to watchers.
        self.following: dict[str, Following] = {}
        # Trips heard to end (an end is final; a read that began before it cannot revive them),
        # and trips heard of since the last read (newer than it, maybe).
        self._ended: set[str] = set()
        self._heard: set[str] = set()
        self._sending: set[asyncio.Task] = set()
        fanout.hub.observe(self._observe)

    def changed(self, trip: service.Trip) -> None:
        """`trips.service.Listener`: a committed change of a trip, for its phone and its watchers."""
        self.note(trip)
        self._publish_soon(status_event(trip))

    async def revoked(self, share: Share) -> None:
        """A revoked link: its watchers, in every process, are closed (1008)."""
        await self._fanout.publish_trip(trip_event("share_revoked", trip_id=str(share.trip_id),
                                                   user_id=str(share.user_id), frame={"share_id": str(share.share_id)}))

    def note(self, trip: service.Trip) -> None:
        """One report of a trip (a change, or a watcher's read of it)."""
        self._note(str(trip.user_id), str(trip.trip_id), started_at=trip.started_at, updated_at=trip.updated_at,
                   unfinished=trip.unfinished)

    def _note(self, user_id: str, trip_id: str, *, started_at: datetime, updated_at: datetime,
              unfinished: bool) -> None:
        self._heard.add(trip_id)
        current = self.following.get(user_id)
        if not unfinished:
            self._ended.add(trip_id)
            if current is not None and current.trip_id == trip_id:
                del self.following[user_id]
            return
        if trip_id in self._ended:
            return
        newer = (current is None or (current.trip_id == trip_id and current.updated_at <= updated_at)
                 or (current.trip_id != trip_id and current.started_at <= started_at))
        if newer:
            self.following[user_id] = Following(trip_id, started_at, updated_at)

    def _observe(self, event: Event) -> None:
        """Every event of the hub: other processes' trip changes, and alerts opened."""
        if event.type == "trip_status" and event.trip_id is not None:
            frame = event.frame
            self._note(event.user_id, event.trip_id, started_at=datetime.fromisoformat(frame["started_at"]),
                       updated_at=datetime.fromisoformat(frame["updated_at"]), unfinished=frame["unfinished"])
        elif event.type == "alert_opened" and event.phone_status != "cancelled":
            # (A duress alert is `cancelled` to the phone from the start: nothing the phone can
            # open, its own share link included, may show it.)
            following = self.following.get(event.user_id)
            opened_at = event.frame.get("alert", {}).get("opened_at")
            if following is None or opened_at is None or datetime.fromisoformat(opened_at) < following.started_at:
                return  # no trip, or an alert from before it (a repeat of an older one)
            # This process's watchers only: every process hears the alert itself. After this
            # publish, not inside it.
            asyncio.get_running_loop().call_soon(self._fanout.hub.publish, trip_event(
                "trip_alert", trip_id=following.trip_id, user_id=event.user_id, frame={"status": "alert"}))

    def _publish_soon(self, *events: Event) -> None:
        task = asyncio.get_running_loop().create_task(self._fanout.publish_trip(*events), name="trip-publish")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def relay_locations(self, moved: Sequence[tuple[uuid.UUID, Fix]]) -> None:
        """`Ingest.on_moved`: fresh fixes of users on a trip, to its watchers (best effort)."""
        if not self.following:
            return
        events = []
        for user_id, fix in moved:
            following = self.following.get(str(user_id))
            if following is None or fix.ts < following.started_at:
                continue  # no trip, or a fix of the offline buffer from before it started
            frame = {"type": "location", "lat": fix.lat, "lon": fix.lon, "acc": fix.accuracy_m,
                     "ts": wire.format_time(fix.ts)}
            events.append(trip_event("trip_location", trip_id=following.trip_id, user_id=str(user_id), frame=frame))
        if events:
            await self._fanout.publish_trip(*events)

    async def refresh(self) -> None:
        """Merge a read of every unfinished trip (at start and every sweep): what this process heard
        meanwhile wins where it is newer."""
        async with db.autocommit(self._engine) as connection:
            rows = (await connection.execute(
                sa.select(trips.c.trip_id, trips.c.user_id, trips.c.started_at, trips.c.updated_at)
                .where(trips.c.status.in_(TRIP_UNFINISHED)))).all()
        listed = {str(row.trip_id) for row in rows}
        for row in rows:
            self._note(str(row.user_id), str(row.trip_id), started_at=row.started_at, updated_at=row.updated_at,
                       unfinished=True)
        kept = listed | self._heard
        for user_id in [user_id for user_id, following in self.following.items() if following.trip_id not in kept]:
            del self.following[user_id]
        self._ended &= listed
        self._heard = set()

    async def _run(self) -> None:
        while True:  # the first refresh ran in the lifespan, before serving
            await asyncio.sleep(self._sweep_interval_s)
            try:
                await self.refresh()
            except db.STORAGE_ERRORS as error:
                log.warning("unfinished trips not read (%s); the next sweep tries again", db.describe(error))
                continue
            self.health.progressed()

    async def close(self) -> None:
        await super().close()
        for task in list(self._sending):
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)
