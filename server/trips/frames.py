"""The trip frames of the phone socket (`trip_start`, `trip_end`, `safe`), each answered with
one frame. Refusals raise `refusals.Refusal`, which the socket sends as an `error` frame."""

import logging
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from server.accounts.auth import Device
from server.core import db, wire
from server.trips import answers, checkin, service, timers

if TYPE_CHECKING:  # the lifespan's bag of services is built above every domain
    from server.services import Services


log = logging.getLogger(__name__)


def started(trip: service.Trip) -> dict:
    return {"type": "trip_started", "trip_id": str(trip.trip_id), "kind": trip.kind, "status": trip.status,
            "due_at": None if trip.due_at is None else wire.format_time(trip.due_at)}


def ended(trip: service.Trip) -> dict:
    return {"type": "trip_ended", "trip_id": str(trip.trip_id), "status": trip.status}


async def answer(frame: wire.TripStart | wire.TripEnd | wire.Safe, *, services: "Services", device: Device) -> dict:
    if isinstance(frame, wire.TripStart):
        trip = await service.start(engine=services.engine, settings=services.settings, user_id=device.user_id,
                                   checkin=checkin.judge(frame, now=datetime.now(UTC)), listener=services.trip_listener)
        return started(trip)
    if isinstance(frame, wire.TripEnd):
        trip = await service.end(engine=services.engine, user_id=device.user_id, trip_id=frame.trip_id,
                                 listener=services.trip_listener)
        return ended(trip)
    # On the alert path's pool, as `sos_cancel`: the duress PIN raises an alert.
    trip = await answers.safe(engine=services.alert_engine, settings=services.settings, user_id=device.user_id,
                              frame=frame, relay=services.relay, listener=services.trip_listener)
    return answers.answer_frame(trip)


async def on_connect(*, services: "Services", user_id: uuid.UUID) -> list[dict]:
    """What a phone that (re)connects must hear about its trip: `are_you_safe` while it is overdue
    (the question may have been asked while the phone was away). Users with no unfinished trip
    cost no query. A storage failure asks nothing now: the phone is asked at its next connect."""
    progress = services.trip_progress
    if progress is None or not progress.follows(user_id):
        return []
    try:
        question = await timers.pending_question(engine=services.engine, user_id=user_id)
    except db.STORAGE_ERRORS as error:
        log.warning("a connecting phone's trip not read (%s)", db.describe(error))
        return []
    return [] if question is None else [question]
