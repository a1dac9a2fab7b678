"""Per-fix checks of a trip against a real server: a taxi ride that stays at its destination
ends by itself, a hiker far from the planned route for 3 plausible fixes is off route (not
after 2, not after implausible ones), and the console of an open alert hears of it.

Fixes carry device times a little ahead (the rules allow 300 s), so the dwell and the
speeds between fixes are those of the device's timeline, without waiting for them."""

import asyncio
import json
import time
from datetime import UTC, datetime

from tests.servers import TAIPEI_101, add_staff, connect_console, connect_phone, login, sos_frame, until_type
from tests.trips.timing import iso_in, ping, rider, start_trip, trip_row

NEAR = (TAIPEI_101[0] + 0.00045, TAIPEI_101[1])  # 50 m north of the destination
FAR = (TAIPEI_101[0] + 0.02, TAIPEI_101[1])  # 2.2 km north
ROUTE = {"type": "LineString", "coordinates": [[121.5645, 25.0339], [121.5845, 25.0339]]}  # 2 km east
OFF = (TAIPEI_101[0] + 0.0045, 121.5745)  # 500 m north of the route's middle
ON = (TAIPEI_101[0], 121.5745)


async def until_row(engine, trip_id: str, timeout_s: float = 5.0, **expected) -> dict:
    """The trip's row once it holds these values (the checks run just after the ack)."""
    deadline = time.monotonic() + timeout_s
    while True:
        row = await trip_row(engine, trip_id)
        if all(row[key] == value for key, value in expected.items()) or time.monotonic() > deadline:
            assert {key: row[key] for key in expected} == expected
            return row
        await asyncio.sleep(0.05)


async def test_a_taxi_ride_that_stays_at_its_destination_for_the_dwell_ends_arrived(server, engine):
    _, token = rider(server)
    phone, _ = await connect_phone(server, token)
    trip_id = (await start_trip(phone, kind="taxi", plate="abc 1234", eta=iso_in(1800),
                                destination={"lat": TAIPEI_101[0], "lon": TAIPEI_101[1]}))["trip_id"]
    start_ms = int(time.time() * 1000)
    at = lambda seconds: start_ms + 1000 * seconds  # noqa: E731

    await ping(phone, 0, NEAR, ts_ms=at(1))
    await ping(phone, 1, NEAR, ts_ms=at(2))
    await ping(phone, 2, FAR, ts_ms=at(45))  # left the radius: the dwell starts again
    await until_row(engine, trip_id, near_destination_since=None)
    await ping(phone, 3, NEAR, ts_ms=at(90))
    await ping(phone, 4, NEAR, ts_ms=at(140))
    since = datetime.fromtimestamp(at(90) / 1000, UTC)
    await until_row(engine, trip_id, status="active", near_destination_since=since)
    await asyncio.sleep(0.3)
    await until_row(engine, trip_id, status="active", near_destination_since=since)  # 50 s of the 60 s dwell

    await ping(phone, 5, NEAR, ts_ms=at(151))
    arrived = await until_type(phone, "trip_arrived")
    assert arrived == {"type": "trip_arrived", "trip_id": trip_id}
    row = await trip_row(engine, trip_id)
    assert (row["status"], row["due_at"]) == ("arrived", None) and row["ended_at"] is not None
    await phone.close()


async def test_a_hiker_is_off_route_after_three_far_plausible_fixes_and_the_open_alert_hears_of_it(
        server, engine):
    await add_staff(engine, "xinyi-desk")
    console, _ = await connect_console(server, login(server, "xinyi-desk"))
    _, token = rider(server)
    phone, _ = await connect_phone(server, token)
    trip_id = (await start_trip(phone, kind="hike", planned_route=ROUTE, expected_return=iso_in(7200),
                                eta=None))["trip_id"]
    start_ms = int(time.time() * 1000)
    at = lambda seconds: start_ms + 1000 * seconds  # noqa: E731

    await ping(phone, 0, ON, ts_ms=at(1))
    await ping(phone, 1, OFF, ts_ms=at(30))
    await ping(phone, 2, OFF, ts_ms=at(35))
    await until_row(engine, trip_id, off_route_fixes=2, off_route=False)
    # Implausible fixes neither count nor reset: a teleport, then a fix too vague to judge.
    await ping(phone, 3, (TAIPEI_101[0] + 0.5, 121.5745), ts_ms=at(36))
    await ping(phone, 4, OFF, ts_ms=at(37), acc=10_000.0)
    await asyncio.sleep(0.3)
    row = await until_row(engine, trip_id, off_route_fixes=2, off_route=False)

    await phone.send(json.dumps(sos_frame()))
    alert_id = (await until_type(phone, "sos_ack"))["alert_id"]
    assert (await until_type(console, "alert_opened"))["alert"]["alert_id"] == alert_id
    await ping(phone, 5, OFF, ts_ms=at(40))
    await until_row(engine, trip_id, off_route=True, off_route_fixes=3)
    noted = await until_type(console, "alert_updated")
    assert noted["alert"]["alert_id"] == alert_id
    assert [note["text"] for note in noted["alert"]["notes"]] == [
        "Off the planned route: more than 200 m from it for 3 fixes in a row"]
    assert noted["alert"]["notes"][0]["author"] == "guardian"

    await ping(phone, 6, ON, ts_ms=at(70))
    await until_row(engine, trip_id, off_route=False, off_route_fixes=0)
    back = await until_type(console, "alert_updated")
    assert back["alert"]["notes"][-1]["text"] == "Back on the planned route"
    await phone.close()
    await console.close()
