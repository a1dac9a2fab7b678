"""An alert raised during a trip carries the trip to the police (issue 10 §5): the plate, driver,
vehicle, planned route and the track since check-in in the Alert's `trip`; the trip marked `alert`."""

import asyncio
import json
import math
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import sqlalchemy as sa

from server.accounts.auth import Device
from server.alerts import service as alerts
from server.alerts import tripcontext
from server.alerts import view as alertview
from server.core import wire
from server.core.config import Settings
from server.trips import checkin
from server.trips import service as trips
from tests.servers import (TAIPEI_101, add_staff, bearer, connect_console, connect_phone, create_user, login,
                           sos_frame, until_ack, until_type)

TAIPEI_MAIN_STATION = (25.0478, 121.5170)
FRAME_LIMIT_BYTES = 64 * 1024


def settings_of(test_env) -> Settings:
    return Settings(database_url=test_env["GUARDIAN_DATABASE_URL"])


def route_geojson(vertices: int, start=TAIPEI_101) -> dict:
    """A wiggly line of `vertices` positions ([lon, lat]) heading west, a few metres apart."""
    return {"type": "LineString", "coordinates": [
        [start[1] - index * 3e-5, start[0] + 2e-5 * math.sin(index / 3)] for index in range(vertices)]}


async def check_in(engine, test_env, user_id: str, **fields) -> trips.Trip:
    values = {"kind": "taxi", "plate": "abc1234", "driver_name": "Chen Wei",
              "vehicle": {"make": "Toyota Wish", "colour": "yellow"},
              "destination": {"lat": TAIPEI_MAIN_STATION[0], "lon": TAIPEI_MAIN_STATION[1]},
              "eta": int((time.time() + 1800) * 1000), "planned_route": route_geojson(40), **fields}
    judged = checkin.judge(wire.TripFields(**values), now=datetime.now(UTC))
    return await trips.start(engine=engine, settings=settings_of(test_env), user_id=uuid.UUID(user_id),
                             checkin=judged)


async def ping(ws, seq: int, at: tuple[float, float], ts_ms: int) -> None:
    await ws.send(json.dumps({"type": "ping", "seq": seq, "ts": ts_ms, "lat": at[0], "lon": at[1], "acc": 7.0}))


async def trip_row(engine, trip_id) -> dict:
    async with engine.connect() as connection:
        row = (await connection.execute(sa.text("SELECT status, alert_id FROM trips WHERE trip_id = :t"),
                                        {"t": trip_id})).one()
        return dict(row._mapping)


async def alert_trip_id(engine, alert_id: str):
    async with engine.connect() as connection:
        return await connection.scalar(sa.text("SELECT trip_id FROM alerts WHERE alert_id = :a"), {"a": alert_id})


async def test_an_sos_during_a_taxi_ride_shows_the_police_its_plate_driver_vehicle_route_and_track_since_check_in(
        server, engine, test_env):
    await add_staff(engine, "xinyi-desk")
    console, snapshot = await connect_console(server, login(server, "xinyi-desk"))
    assert snapshot["alerts"] == []
    user_id, token = create_user(server, name="Mei Wu")
    phone, _ = await connect_phone(server, token)
    before_ms = int(time.time() * 1000) - 60_000  # a minute before the check-in: the alert's track, not the trip's
    await ping(phone, 0, TAIPEI_101, before_ms)
    await until_ack(phone, 0)
    trip = await check_in(engine, test_env, user_id)
    moved = (TAIPEI_101[0] + 2e-4, TAIPEI_101[1] - 3e-4)
    after_ms = int(time.time() * 1000) + 1000
    await ping(phone, 1, moved, after_ms)
    await until_ack(phone, 1)

    await phone.send(json.dumps(sos_frame(at=moved)))
    alert_id = (await until_type(phone, "sos_ack"))["alert_id"]
    opened = (await until_type(console, "alert_opened", timeout_s=5.0))["alert"]
    await console.close()
    console, snapshot = await connect_console(server, login(server, "xinyi-desk"))
    [shown] = snapshot["alerts"]
    for alert in (opened, shown):
        assert alert["alert_id"] == alert_id
        carried = alert["trip"]
        assert carried["trip_id"] == str(trip.trip_id) and carried["kind"] == "taxi"
        assert (carried["plate"], carried["driver_name"]) == ("ABC-1234", "Chen Wei")
        assert carried["vehicle"] == {"make": "Toyota Wish", "colour": "yellow"}
        assert carried["status"] == "alert"
        assert datetime.fromisoformat(carried["started_at"]) == trip.started_at
        assert carried["destination"] == {"lat": TAIPEI_MAIN_STATION[0], "lon": TAIPEI_MAIN_STATION[1]}
        assert carried["planned_route"]["type"] == "LineString"
        assert carried["planned_route"]["coordinates"] == [
            [round(lon, 6), round(lat, 6)] for lon, lat in route_geojson(40)["coordinates"]]
        assert carried["planned_route_m"] > 100
        assert [(point["lat"], point["lon"]) for point in carried["track"]] == [moved], \
            "the trip's track starts at the check-in"
        assert [(point["lat"], point["lon"]) for point in alert["track"]] == [TAIPEI_101, moved], \
            "the alert's own track reaches back before the SOS as always"
    assert await trip_row(engine, trip.trip_id) == {"status": "alert", "alert_id": uuid.UUID(alert_id)}
    assert await alert_trip_id(engine, alert_id) == trip.trip_id
    await console.close()
    await phone.close()


async def test_an_sos_with_no_trip_or_after_the_trip_ended_carries_no_trip(server, engine, test_env):
    await add_staff(engine, "xinyi-desk")
    _, token = create_user(server)
    response = httpx.post(f"{server.url}/v1/sos", json=sos_frame(), headers=bearer(token), timeout=10)
    assert response.status_code == 201, response.text
    never = response.json()["alert_id"]

    other_id, other_token = create_user(server, name="Li Na")
    trip = await check_in(engine, test_env, other_id)
    await trips.end(engine=engine, user_id=uuid.UUID(other_id), trip_id=trip.trip_id)
    response = httpx.post(f"{server.url}/v1/sos", json=sos_frame(), headers=bearer(other_token), timeout=10)
    assert response.status_code == 201, response.text
    after = response.json()["alert_id"]

    console, snapshot = await connect_console(server, login(server, "xinyi-desk"))
    assert {alert["alert_id"]: alert["trip"] for alert in snapshot["alerts"]} == {never: None, after: None}
    assert await trip_row(engine, trip.trip_id) == {"status": "ended", "alert_id": None}, "an ended trip stays so"
    assert await alert_trip_id(engine, after) is None
    await console.close()


async def test_an_alert_raised_by_another_caller_than_the_phone_records_and_marks_the_trip(server, engine, test_env):
    """A trip's timer raises its overdue or duress alert with `raise_alert`, the user's device and
    no fix of its own: the trip comes from PostgreSQL by user, not from the phone's socket."""
    user_id, _ = create_user(server)
    trip = await check_in(engine, test_env, user_id, kind="hike", plate=None, driver_name=None, vehicle=None,
                          eta=None, destination=None, planned_route=route_geojson(5),
                          expected_return=int((time.time() + 3600) * 1000))
    async with engine.connect() as connection:
        device_id = await connection.scalar(sa.text("SELECT device_id FROM devices WHERE user_id = :u"),
                                            {"u": user_id})
    raised = await alerts.raise_alert(engine=engine, settings=settings_of(test_env),
                                      device=Device(device_id, uuid.UUID(user_id)),
                                      sos=wire.SosFields(sos_id=str(uuid.uuid4()), note="overdue: no answer"))
    assert (raised.created, raised.trip_id, raised.trip_marked) == (True, trip.trip_id, True)
    carried = raised.view.alert["trip"]
    assert (carried["kind"], carried["status"], carried["plate"], carried["track"]) == ("hike", "alert", None, [])
    assert datetime.fromisoformat(carried["expected_return"]) == trip.expected_return
    assert await trip_row(engine, trip.trip_id) == {"status": "alert", "alert_id": raised.alert_id}
    async with engine.connect() as connection:
        [read] = await alertview.load(connection=connection, alert_ids=[raised.alert_id],
                                      track_points=settings_of(test_env).alert_track_points)
    assert read == raised.view, "the view sent with the commit is the view the consoles read later"


async def test_an_sos_never_waits_on_a_trip_row_someone_holds_locked(server, engine, test_env):
    """A timer holding its trip's row lock while it raises the alert, or the ingest mid-batch, must
    not hold the SOS back: the alert records the trip at once and says it did not mark it."""
    user_id, _ = create_user(server)
    trip = await check_in(engine, test_env, user_id)
    async with engine.connect() as connection:
        device_id = await connection.scalar(sa.text("SELECT device_id FROM devices WHERE user_id = :u"),
                                            {"u": user_id})
    async with engine.connect() as holder:
        transaction = await holder.begin()
        await holder.execute(sa.text("SELECT 1 FROM trips WHERE trip_id = :t FOR UPDATE"), {"t": trip.trip_id})
        started = time.monotonic()
        raised = await asyncio.wait_for(alerts.raise_alert(
            engine=engine, settings=settings_of(test_env), device=Device(device_id, uuid.UUID(user_id)),
            sos=wire.SosFields(sos_id=str(uuid.uuid4()), lat=TAIPEI_101[0], lon=TAIPEI_101[1])), timeout=10)
        waited_s = time.monotonic() - started
        await transaction.rollback()
    assert waited_s < 5, f"the SOS waited {waited_s:.1f} s on the trip's lock"
    assert (raised.created, raised.trip_id, raised.trip_marked) == (True, trip.trip_id, False)
    assert raised.view.alert["trip"]["plate"] == "ABC-1234", "the police see the trip all the same"
    assert await trip_row(engine, trip.trip_id) == {"status": "active", "alert_id": None}


async def test_an_alert_with_a_10000_vertex_route_and_full_tracks_fits_one_console_frame(server, engine, test_env):
    await add_staff(engine, "xinyi-desk")
    user_id, token = create_user(server)
    trip = await check_in(engine, test_env, user_id, kind="hike", plate=None, driver_name="x" * 100,
                          vehicle={"make": "m" * 100, "colour": "c" * 100}, eta=None,
                          planned_route=route_geojson(10_000), expected_return=int((time.time() + 7200) * 1000))
    phone, _ = await connect_phone(server, token)
    points = settings_of(test_env).alert_track_points + 20
    start_ms = int(time.time() * 1000) + 1000
    for seq in range(points):  # one a second, ahead of the clock by less than the rules allow
        at = (TAIPEI_101[0] + seq * 1.234567e-5, TAIPEI_101[1] - seq * 2.345678e-5)
        await ping(phone, seq, at, start_ms + seq * 1000)
    await until_ack(phone, points - 1, timeout_s=20)
    await phone.send(json.dumps(sos_frame(note="n" * 1000)))
    await until_type(phone, "sos_ack")
    console = None
    try:
        console, snapshot = await connect_console(server, login(server, "xinyi-desk"))
        [alert] = snapshot["alerts"]
    finally:
        if console is not None:
            await console.close()
        await phone.close()
    size = len(wire.encode(alert).encode())
    assert size < FRAME_LIMIT_BYTES * 3 // 4, f"an Alert of {size} bytes"
    route = alert["trip"]["planned_route"]["coordinates"]
    assert len(route) <= tripcontext.ROUTE_VERTICES_SHOWN
    full = route_geojson(10_000)["coordinates"]
    assert route[0] == [round(value, 6) for value in full[0]] and route[-1] == [round(v, 6) for v in full[-1]]
    assert len(alert["trip"]["track"]) == settings_of(test_env).alert_track_points
    assert alert["trip"]["planned_route_m"] > 8000, "measured on the whole route, not the one shown"
    assert alert["trip"]["trip_id"] == str(trip.trip_id)


async def test_a_second_trip_after_the_alerted_one_ends_is_not_the_first_alerts(server, engine, test_env):
    """An alert keeps the trip it was raised during: a later trip of the user is not shown with it."""
    await add_staff(engine, "xinyi-desk")
    user_id, token = create_user(server)
    first = await check_in(engine, test_env, user_id)
    response = httpx.post(f"{server.url}/v1/sos", json=sos_frame(), headers=bearer(token), timeout=10)
    alert_id = response.json()["alert_id"]
    await trips.end(engine=engine, user_id=uuid.UUID(user_id), trip_id=first.trip_id)
    second = await check_in(engine, test_env, user_id, plate="XYZ-987",
                            eta=int((datetime.now(UTC) + timedelta(hours=1)).timestamp() * 1000))
    console, snapshot = await connect_console(server, login(server, "xinyi-desk"))
    [alert] = snapshot["alerts"]
    await console.close()
    assert alert["alert_id"] == alert_id
    assert (alert["trip"]["trip_id"], alert["trip"]["status"], alert["trip"]["plate"]) == (
        str(first.trip_id), "ended", "ABC-1234")
    assert second.status == "active" and second.alert_id is None
