"""Hostile `safe` frames: each is refused with the contract's error, counts no PIN unless a PIN
was judged, and leaves the socket open; PIN guessing hits the lockout. And the listener (the
watchers' feed) is told of each step, with the sweep run at a chosen `now`."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notifier.hub import PHONE_FRAME, Hub
from server.alerts.fanout import Fanout
from server.alerts.relay import Relay
from server.core.config import Settings
from server.trips import timers
from server.trips.progress import Progress
from tests.conftest import TEST_ENV
from tests.servers import connect_phone, create_user, receive, until_type
from tests.trips.timing import PIN, ping, rider, start_trip, start_walk_over_http, trip_row

WRONG_EXTENSIONS = st.one_of(
    st.integers(max_value=0), st.integers(min_value=24 * 3600 + 1, max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.text(max_size=5),
    st.lists(st.integers(), max_size=2))


async def refused(phone, frame: dict) -> dict:
    await phone.send(json.dumps(frame))
    answer = await receive(phone, timeout_s=10)
    assert answer["type"] == "error", answer
    return answer


@pytest.mark.parametrize("frame, code, field", [
    ({"trip_id": 42, "pin": PIN}, "invalid_field", "trip_id"),
    ({"trip_id": "not-a-uuid", "pin": PIN}, "invalid_field", "trip_id"),
    ({"pin": 1234}, "invalid_field", "pin"),
    ({"pin": None}, "invalid_field", "pin"),
    ({"trip_id": None}, "invalid_field", "trip_id"),
])
async def test_a_safe_frame_of_the_wrong_shape_is_refused_and_the_socket_stays(server, engine, frame, code,
                                                                               field):
    _, token = rider(server)
    phone, _ = await connect_phone(server, token)
    trip_id = (await start_trip(phone))["trip_id"]
    answer = await refused(phone, {"type": "safe", "trip_id": trip_id, "pin": PIN, **frame})
    assert (answer["code"], answer.get("field")) == (code, field)
    await ping(phone, 0)
    assert (await trip_row(engine, trip_id))["status"] == "active"
    await phone.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extend_s=WRONG_EXTENSIONS)
async def test_safe_with_an_extension_out_of_range_is_refused_before_any_pin_is_judged(server, engine, extend_s):
    _, token = rider(server, phone=f"+88693{uuid.uuid4().int % 10**7:07d}")
    phone, _ = await connect_phone(server, token)
    trip_id = (await start_trip(phone))["trip_id"]
    before = await trip_row(engine, trip_id)
    answer = await refused(phone, {"type": "safe", "trip_id": trip_id, "pin": "0000", "extend_s": extend_s})
    assert (answer["code"], answer.get("field")) == ("invalid_field", "extend_s")
    assert (await trip_row(engine, trip_id))["due_at"] == before["due_at"]
    # No PIN was judged: the right one still works at once.
    await phone.send(json.dumps({"type": "safe", "trip_id": trip_id, "pin": PIN, "extend_s": 60}))
    assert (await until_type(phone, "trip_status", timeout_s=10))["status"] == "active"
    await phone.close()


async def test_safe_on_someone_elses_trip_is_not_found_and_on_an_ended_one_conflict(server):
    _, token = rider(server)
    _, other_token = rider(server, phone="+886955555555")
    other_trip = start_walk_over_http(server, other_token)
    phone, _ = await connect_phone(server, token)
    answer = await refused(phone, {"type": "safe", "trip_id": other_trip, "pin": PIN})
    assert answer["code"] == "not_found"
    answer = await refused(phone, {"type": "safe", "trip_id": str(uuid.uuid4()), "pin": PIN})
    assert answer["code"] == "not_found"
    trip_id = (await start_trip(phone))["trip_id"]
    await phone.send(json.dumps({"type": "trip_end", "trip_id": trip_id}))
    await until_type(phone, "trip_ended")
    answer = await refused(phone, {"type": "safe", "trip_id": trip_id, "pin": PIN})
    assert answer["code"] == "conflict"
    await phone.close()


async def test_guessing_the_pin_with_safe_hits_the_lockout(server, engine):
    _, token = rider(server)
    phone, _ = await connect_phone(server, token)
    trip_id = (await start_trip(phone))["trip_id"]
    for guess in ("0000", "1111", "2222", "3333", "4444"):
        assert (await refused(phone, {"type": "safe", "trip_id": trip_id, "pin": guess}))["code"] == "forbidden"
    locked = await refused(phone, {"type": "safe", "trip_id": trip_id, "pin": PIN})
    assert locked["code"] == "rate_limited", "locked: even the right PIN waits"
    row = await trip_row(engine, trip_id)
    assert row["status"] == "active"
    await phone.close()


async def test_safe_without_pins_set_is_forbidden(server):
    _, token = create_user(server, phone="+886966666666")
    phone, _ = await connect_phone(server, token)
    trip_id = (await start_trip(phone))["trip_id"]
    assert (await refused(phone, {"type": "safe", "trip_id": trip_id, "pin": PIN}))["code"] == "forbidden"
    await phone.close()


class Told:
    """A listener that records what it is told (the watchers' feed's place)."""

    def __init__(self):
        self.trips = []

    def changed(self, trip) -> None:
        self.trips.append(trip)


async def test_each_step_is_told_to_the_listener_and_asked_of_the_phone_at_the_sweeps_now(server, engine, redis):
    user_id, token = rider(server)
    trip_id = start_walk_over_http(server, token)
    settings_ = Settings(database_url=TEST_ENV["GUARDIAN_DATABASE_URL"], redis_url=TEST_ENV["GUARDIAN_REDIS_URL"])
    hub, heard, told = Hub(), [], Told()
    hub.add_phone(user_id, heard.append)
    fanout = Fanout(redis=redis, subscriber=redis, hub=hub)
    relay = Relay(engine=engine, redis=redis, settings=settings_, fanout=fanout)
    progress = Progress(engine=engine, settings=settings_, fanout=fanout, relay=relay, listener=told)
    sweeper = timers.Timers(engine=engine, settings=settings_, relay=relay, fanout=fanout, listener=told,
                            progress=progress)
    try:
        due_at = (await trip_row(engine, trip_id))["due_at"]
        await sweeper.sweep(now=due_at - timedelta(seconds=1))
        assert told.trips == [] and heard == []
        await sweeper.sweep(now=due_at + timedelta(seconds=1))
        assert [(str(trip.trip_id), trip.status) for trip in told.trips] == [(trip_id, "overdue")]
        answer_by = told.trips[0].answer_by
        assert answer_by == due_at + timedelta(seconds=1 + settings_.trip_answer_s)
        assert [(event.type, event.frame) for event in heard] == [(PHONE_FRAME, {
            "type": "are_you_safe", "trip_id": trip_id, "deadline": answer_by.isoformat().replace("+00:00", "Z")})]
        await sweeper.sweep(now=answer_by + timedelta(seconds=1))
        assert [trip.status for trip in told.trips] == ["overdue", "alert"]
        assert told.trips[-1].alert_id is not None
        await sweeper.sweep(now=datetime.now(UTC) + timedelta(days=2))
        assert len(told.trips) == 2, "each step once"
        assert progress.follows(uuid.UUID(user_id))
    finally:
        await relay.close()
