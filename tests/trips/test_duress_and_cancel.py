"""What the review found: the duress PIN must not show on the user's own share link, a resent
duress `safe` raises one alert, and a cancelled SOS leaves the trip's timer running."""

import json

from tests.servers import add_staff, connect_console, connect_phone, login, quiet, sos_frame, until_type
from tests.sharing.watching import shared, watch
from tests.trips.timing import DURESS_PIN, FAST, PIN, count, iso_in, make_due, rider, start_trip, trip_row


async def _watched_answer(server, engine, pin: str, phone_number: str) -> list[str]:
    """An overdue walk, watched through its share link, answered `safe` with `pin`: the
    statuses the watcher saw after the question."""
    _, token = rider(server, phone=phone_number)
    phone, _ = await connect_phone(server, token)
    trip_id = (await start_trip(phone))["trip_id"]
    watcher, first = await watch(server, shared(server, token, trip_id)["token"])
    assert first["type"] == "trip"
    await make_due(engine, trip_id)
    await until_type(phone, "are_you_safe", timeout_s=5)
    await until_type(watcher, "trip_status", status="overdue")
    await phone.send(json.dumps({"type": "safe", "trip_id": trip_id, "pin": pin, "extend_s": 900}))
    await until_type(phone, "trip_status", status="active")
    seen = [frame["status"] for frame in await quiet(watcher, 2.0) if frame["type"] == "trip_status"]
    reconnected, again = await watch(server, shared(server, token, trip_id)["token"])
    seen.append(again["status"])
    for socket in (phone, watcher, reconnected):
        await socket.close()
    return seen


async def test_the_duress_pin_never_shows_on_the_trips_share_link(fresh_server, engine):
    server = fresh_server(**FAST)
    normal = await _watched_answer(server, engine, PIN, "+886911000001")
    duress = await _watched_answer(server, engine, DURESS_PIN, "+886911000002")
    assert duress == normal == ["active", "active"]
    assert await count(engine, "SELECT count(*) FROM alerts WHERE duress") == 1


async def test_a_resent_duress_safe_raises_one_alert(fresh_server, engine):
    server = fresh_server(**FAST)
    _, token = rider(server)
    phone, _ = await connect_phone(server, token)
    trip_id = (await start_trip(phone))["trip_id"]
    await make_due(engine, trip_id)
    await until_type(phone, "are_you_safe", timeout_s=5)
    for _ in range(3):  # the phone resends: its socket dropped before the answer, it thinks
        await phone.send(json.dumps({"type": "safe", "trip_id": trip_id, "pin": DURESS_PIN, "extend_s": 900}))
        await until_type(phone, "trip_status", status="active")
    await phone.close()
    assert await count(engine, "SELECT count(*) FROM alerts WHERE duress AND trip_id = :t", t=trip_id) == 1


async def test_a_cancelled_sos_leaves_the_hike_looked_for_and_the_phone_cannot_tell_which_pin(
        fresh_server, engine):
    server = fresh_server(**FAST)
    await add_staff(engine, "xinyi-desk")
    console, _ = await connect_console(server, login(server, "xinyi-desk"))
    heard = {}
    for pin, number in ((PIN, "+886911000003"), (DURESS_PIN, "+886911000004")):
        _, token = rider(server, phone=number)
        phone, _ = await connect_phone(server, token)
        trip_id = (await start_trip(phone, kind="hike", expected_return=iso_in(3600)))["trip_id"]
        await phone.send(json.dumps(sos_frame()))
        alert_id = (await until_type(phone, "sos_ack"))["alert_id"]
        assert (await trip_row(engine, trip_id))["status"] == "alert"
        await phone.send(json.dumps({"type": "sos_cancel", "alert_id": alert_id, "pin": pin}))
        await until_type(phone, "alert_status", status="cancelled")
        frames = await quiet(phone, 1.5)
        heard[pin] = [(frame["type"], frame.get("status")) for frame in frames if frame["type"] != "report_interval"]
        row = await trip_row(engine, trip_id)
        assert (row["status"], row["alert_id"]) == ("active", None), "the hike goes on, its timer with it"
        # And it is still looked for: overdue asks the phone.
        await make_due(engine, trip_id)
        await until_type(phone, "are_you_safe", timeout_s=5)
        await phone.close()
    assert heard[PIN] == heard[DURESS_PIN]
    await console.close()
