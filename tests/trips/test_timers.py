"""A trip's timers against real servers: overdue → are_you_safe (live and on reconnect) → the
contacts' push → an automatic police alert on the console, reason overdue; `safe` with the PIN
stops it, with the duress PIN it looks the same to the phone and raises a duress alert.

The clock: the servers sweep every 0.2 s on their own clock, and a test moves a trip's
`due_at` or `answer_by` into the past in PostgreSQL (tests/trips/timing.py).
"""

import asyncio
import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from tests.endpoints import FakeFcm
from tests.servers import TAIPEI_101, add_staff, connect_console, connect_phone, login, quiet, receive, until_type
from tests.test_channels import fcm_settings
from tests.trips.timing import (DURESS_PIN, FAST, FRIEND_TOKEN, PIN, count, friend_with_app, make_due,
                                make_unanswered, ping, rider, start_trip, trip_row, until_status)


async def test_an_overdue_trip_asks_the_phone_pushes_the_contacts_then_raises_an_alert_for_the_console(
        fresh_server, engine):
    with FakeFcm(hang_s=0) as fcm:
        server = fresh_server(**FAST, **fcm_settings(fcm))
        await add_staff(engine, "xinyi-desk")
        console, snapshot = await connect_console(server, login(server, "xinyi-desk"))
        assert snapshot["alerts"] == []
        friend_with_app(server)
        user_id, token = rider(server, contact="+886911111111")
        phone, _ = await connect_phone(server, token)
        await ping(phone, 0, TAIPEI_101)
        trip_id = (await start_trip(phone))["trip_id"]

        await make_due(engine, trip_id)
        asked = await until_type(phone, "are_you_safe", timeout_s=5)
        row = await trip_row(engine, trip_id)
        assert row["status"] == "overdue"
        assert asked == {"type": "are_you_safe", "trip_id": trip_id,
                         "deadline": asked["deadline"]}
        assert datetime.fromisoformat(asked["deadline"]) == row["answer_by"]
        pushes = fcm.wait_for(1)
        assert [request["body"]["message"]["token"] for request in pushes] == [FRIEND_TOKEN]
        assert pushes[0]["body"]["message"]["data"] == {"type": "trip_overdue", "trip_id": trip_id, "kind": "walk"}

        # A phone that was away is asked when it comes back.
        await phone.close()
        phone, _ = await connect_phone(server, token)
        assert (await until_type(phone, "are_you_safe")) == asked

        await make_unanswered(engine, trip_id)
        opened = (await until_type(console, "alert_opened", timeout_s=5))["alert"]
        assert (opened["reason"], opened["duress"], opened["user"]["user_id"]) == ("overdue", False, user_id)
        assert opened["precinct"]["id"] == "xinyi", "routed by the last location"
        assert (opened["location"]["lat"], opened["location"]["lon"]) == TAIPEI_101
        assert opened["location"]["quality"] == "last_known"
        row = await until_status(engine, trip_id, "alert")
        assert str(row["alert_id"]) == opened["alert_id"] and row["answer_by"] is None
        await asyncio.sleep(1.0)
        assert await count(engine, "SELECT count(*) FROM alerts WHERE user_id = :u", u=user_id) == 1
        overdue_pushes = [request for request in fcm.requests
                          if request["body"]["message"]["data"]["type"] == "trip_overdue"]
        assert len(overdue_pushes) == 1, "the contacts hear of the overdue trip once"
        await phone.close()
        await console.close()


async def test_safe_with_the_pin_stops_the_timer_and_extends_the_trip(fresh_server, engine):
    server = fresh_server(**FAST)
    _, token = rider(server)
    phone, _ = await connect_phone(server, token)
    trip_id = (await start_trip(phone))["trip_id"]
    await make_due(engine, trip_id)
    await until_type(phone, "are_you_safe", timeout_s=5)

    sent_at = datetime.now(UTC)
    await phone.send(json.dumps({"type": "safe", "trip_id": trip_id, "pin": PIN, "extend_s": 1800}))
    answer = await until_type(phone, "trip_status", status="active")
    answered_at = datetime.now(UTC)
    row = await trip_row(engine, trip_id)
    assert answer == {"type": "trip_status", "trip_id": trip_id, "status": "active",
                      "due_at": answer["due_at"]}
    assert (row["status"], row["answer_by"]) == ("active", None)
    assert datetime.fromisoformat(answer["due_at"]) == row["due_at"]
    assert sent_at + timedelta(seconds=1800) <= row["due_at"] <= answered_at + timedelta(seconds=1800)
    await asyncio.sleep(1.0)
    assert (await trip_row(engine, trip_id))["status"] == "active", "no step fires on an answered trip"
    assert await count(engine, "SELECT count(*) FROM alerts") == 0

    # On a trip that is not overdue, safe asks for more time: the grace by default.
    before = (await trip_row(engine, trip_id))["due_at"]
    await phone.send(json.dumps({"type": "safe", "trip_id": trip_id, "pin": PIN}))
    answer = await until_type(phone, "trip_status", status="active")
    assert (datetime.fromisoformat(answer["due_at"]) - before).total_seconds() == 600
    await phone.close()


async def _answered(server, engine, pin: str) -> tuple[str, list[dict]]:
    """A fresh rider's overdue trip answered with `pin`: the trip and what the phone heard after."""
    user_id, token = rider(server, phone=f"+88691{len(pin)}000{len(pin)}00")
    phone, _ = await connect_phone(server, token)
    await ping(phone, 0, TAIPEI_101)
    trip_id = (await start_trip(phone))["trip_id"]
    await make_due(engine, trip_id)
    await until_type(phone, "are_you_safe", timeout_s=5)
    await quiet(phone, 1.0)  # the trip's `overdue` status comes with the question, in either order
    await phone.send(json.dumps({"type": "safe", "trip_id": trip_id, "pin": pin, "extend_s": 900}))
    heard = [await receive(phone, timeout_s=10)]
    while heard[-1]["type"] != "trip_status":
        heard.append(await receive(phone, timeout_s=10))
    heard += await quiet(phone, 1.0)
    await phone.close()
    return trip_id, heard


def _shape(frames: list[dict], trip_id: str) -> list[dict]:
    """The frames with this trip's id and times blanked: what must not differ between the PINs."""
    shaped = []
    for frame in frames:
        frame = {key: ("<t>" if key in ("due_at", "deadline", "answer_by") else value) for key, value in frame.items()}
        shaped.append(json.loads(json.dumps(frame).replace(trip_id, "<trip>")))
    return shaped


async def test_safe_with_the_duress_pin_answers_the_same_and_raises_a_duress_alert_the_console_sees(
        fresh_server, engine):
    server = fresh_server(**FAST)
    await add_staff(engine, "xinyi-desk")
    console, _ = await connect_console(server, login(server, "xinyi-desk"))
    normal_trip, normal = await _answered(server, engine, PIN)
    duress_trip, duress = await _answered(server, engine, DURESS_PIN)

    assert _shape(normal, normal_trip) == _shape(duress, duress_trip)
    assert [frame["type"] for frame in duress] == ["trip_status"]
    opened = (await until_type(console, "alert_opened", timeout_s=5))["alert"]
    assert (opened["duress"], opened["reason"]) == (True, "duress")
    async with engine.connect() as connection:
        rows = (await connection.execute(sa.text("SELECT a.status, a.phone_status, a.duress, t.user_id "
                                                 "FROM alerts a JOIN trips t ON t.user_id = a.user_id"))).all()
    assert [(row.status, row.phone_status, row.duress) for row in rows] == [("open", "cancelled", True)]
    for trip_id in (normal_trip, duress_trip):
        row = await trip_row(engine, trip_id)
        assert (row["status"], row["alert_id"]) == ("active", None), "the trip names no alert the phone may read"
    await console.close()
