"""The trip frames of the phone socket (`trip_start`, `trip_end`, `safe`), each answered with
one frame. Refusals raise `refusals.Refusal`, which the socket sends as an `error` frame."""

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from server.accounts.auth import Device
from server.core import refusals, wire
from server.trips import checkin, service

if TYPE_CHECKING:  # the lifespan's bag of services is built above every domain
    from server.services import Services


def started(trip: service.Trip) -> dict:
    return {"type": "trip_started", "trip_id": str(trip.trip_id), "kind": trip.kind, "status": trip.status,
            "due_at": None if trip.due_at is None else wire.format_time(trip.due_at)}


def ended(trip: service.Trip) -> dict:
    return {"type": "trip_ended", "trip_id": str(trip.trip_id), "status": trip.status}


async def answer(frame: wire.TripStart | wire.TripEnd | wire.Safe, *, services: "Services", device: Device) -> dict:
    if isinstance(frame, wire.TripStart):
        trip = await service.start(engine=services.engine, settings=services.settings, user_id=device.user_id,
                                   checkin=checkin.judge(frame, now=datetime.now(UTC)), listener=services.trip_feed)
        return started(trip)
    if isinstance(frame, wire.TripEnd):
        trip = await service.end(engine=services.engine, user_id=device.user_id, trip_id=frame.trip_id,
                                 listener=services.trip_feed)
        return ended(trip)
    raise refusals.UnknownType("safe is not answered yet", field="type")
