"""The watcher's socket end to end: a phone checks in, shares the ride over HTTP, a watcher follows
it live until it ends; and everything a watcher must never see (DESIGN rule 8)."""

import asyncio
import json
import time
from datetime import datetime

import httpx

from tests.servers import (ServerProcess, bearer, connect_console, connect_phone, create_user, login, add_staff,
                           quiet, sos_frame, until_ack, until_type)
from tests.sharing.watching import NEAR_101, move, north, refused_with, share, shared, start_trip, taxi, watch


async def test_a_watcher_sees_the_ride_then_its_moves_then_its_end(server):
    _, token = create_user(server)
    phone, _ = await connect_phone(server, token)
    trip_id = await start_trip(phone)
    await move(phone, 0, *NEAR_101)
    link = shared(server, token, trip_id)
    assert link["url"] == f"{server.url}/share/{link['token']}"
    watcher, first = await watch(server, link["token"])
    assert first["type"] == "trip"
    assert (first["kind"], first["plate"], first["driver_name"], first["status"]) == ("taxi", "ABC-1234", "Chen Wei",
                                                                                     "active")
    assert first["vehicle"] == {"make": "Toyota Prius", "colour": "yellow"}
    assert first["destination"] == {"lat": 25.0478, "lon": 121.517}
    assert first["expires_at"] == link["expires_at"]
    assert [(fix["lat"], fix["lon"]) for fix in first["track"]] == [NEAR_101]
    assert set(first) >= {"started_at", "updated_at", "planned_route"}
    assert not {"user_id", "trip_id", "alert_id", "user", "phone"} & set(first), "a watcher sees the ride only"

    ts_ms = await move(phone, 1, *north(1))
    location = await until_type(watcher, "location")
    assert (location["lat"], location["lon"], location["acc"]) == (*north(1), 6.0)
    assert set(location) == {"type", "lat", "lon", "acc", "ts"}
    assert datetime.fromisoformat(location["ts"]).timestamp() * 1000 == ts_ms

    await phone.send(json.dumps({"type": "trip_end", "trip_id": trip_id}))
    assert (await until_type(phone, "trip_ended"))["trip_id"] == trip_id
    assert await until_type(watcher, "trip_status") == {"type": "trip_status", "status": "ended"}
    # The phone asked for the end: it is answered, not told again.
    assert not [frame for frame in await quiet(phone, 0.5) if frame["type"] == "trip_status"]
    await move(phone, 2, *north(2))
    assert not [frame for frame in await quiet(watcher, 0.8) if frame["type"] == "location"], \
        "a fix after the end reached the watcher"
    await watcher.close()
    await phone.close()


async def test_the_phone_hears_a_change_it_did_not_ask_for(server):
    _, token = create_user(server)
    phone, _ = await connect_phone(server, token)
    trip_id = await start_trip(phone)
    ended = httpx.post(f"{server.url}/v1/trips/{trip_id}/end", headers=bearer(token), timeout=5)
    assert ended.status_code == 200, ended.text
    told = await until_type(phone, "trip_status")
    assert (told["trip_id"], told["status"]) == (trip_id, "ended")
    await phone.close()


async def test_an_unknown_link_closes_the_socket_with_1008_after_accepting_it(server):
    code, reason = await refused_with(server, "A" * 43)
    assert (code, reason) == (1008, "no such link")
    assert (await refused_with(server, "not%20a%20token%3F"))[0] == 1008


async def test_a_revoked_link_closes_its_watchers_at_once_and_stays_closed(server):
    _, token = create_user(server)
    phone, _ = await connect_phone(server, token)
    link = shared(server, token, await start_trip(phone))
    watcher, _ = await watch(server, link["token"])
    revoked = httpx.delete(f"{server.url}/v1/shares/{link['token']}", headers=bearer(token), timeout=5)
    assert revoked.status_code == 204
    async with asyncio.timeout(5):
        await watcher.wait_closed()
    assert (watcher.close_code, watcher.close_reason) == (1008, "this link was revoked")
    assert await refused_with(server, link["token"]) == (1008, "this link was revoked")
    page = httpx.get(f"{server.url}/share/{link['token']}", timeout=5)
    assert page.status_code == 410 and "expired" in page.text
    await phone.close()


async def test_a_link_closes_its_watcher_when_it_expires_and_refuses_it_after(server):
    _, token = create_user(server)
    phone, _ = await connect_phone(server, token)
    link = shared(server, token, await start_trip(phone), expires_in_s=2)
    watcher, _ = await watch(server, link["token"])
    started = time.monotonic()
    async with asyncio.timeout(6):
        await watcher.wait_closed()
    assert time.monotonic() - started < 3.5
    assert (watcher.close_code, watcher.close_reason) == (1008, "this link has expired")
    assert await refused_with(server, link["token"]) == (1008, "this link has expired")
    assert httpx.get(f"{server.url}/share/{link['token']}", timeout=5).status_code == 410
    await phone.close()


async def test_a_watcher_never_gets_a_fix_from_before_the_start_nor_anyone_elses(server):
    _, token = create_user(server)
    _, other_token = create_user(server, name="Bo Hsu", phone="+886900000001")
    phone, _ = await connect_phone(server, token)
    other, _ = await connect_phone(server, other_token)
    before_ms = int(time.time() * 1000) - 60_000
    await move(phone, 0, *north(-3), ts_ms=before_ms - 1000)  # stored before the trip
    trip_id = await start_trip(phone)
    await other.send(json.dumps(taxi(plate="XYZ-5678")))
    await until_type(other, "trip_started")
    link = shared(server, token, trip_id)
    watcher, first = await watch(server, link["token"])
    assert first["track"] == []
    # The phone's offline buffer, recorded before it checked in, arrives after: newer than the last
    # location, so it moves it, but it is not of the trip.
    await phone.send(json.dumps({"type": "batch", "pings": [
        {"seq": 1, "ts": before_ms, "lat": north(-2)[0], "lon": NEAR_101[1], "acc": 5.0},
        {"seq": 2, "ts": before_ms + 1000, "lat": north(-1)[0], "lon": NEAR_101[1], "acc": 5.0}]}))
    await until_ack(phone, 2)
    await move(other, 0, *north(10))
    await move(other, 1, *north(11))
    await move(phone, 3, *NEAR_101)
    frames = await quiet(watcher, 1.0)
    locations = [(frame["lat"], frame["lon"]) for frame in frames if frame["type"] == "location"]
    assert locations == [NEAR_101], frames
    again, first = await watch(server, link["token"])
    assert [(fix["lat"], fix["lon"]) for fix in first["track"]] == [NEAR_101]
    for ws in (watcher, again, phone, other):
        await ws.close()


async def test_a_fix_stamped_after_the_end_is_not_in_the_track_nor_sent(server):
    _, token = create_user(server)
    phone, _ = await connect_phone(server, token)
    trip_id = await start_trip(phone)
    link = shared(server, token, trip_id)
    await move(phone, 0, *NEAR_101)
    await phone.send(json.dumps({"type": "trip_end", "trip_id": trip_id}))
    await until_type(phone, "trip_ended")
    watcher, first = await watch(server, link["token"])
    assert first["status"] == "ended" and first["ended_at"] is not None
    await move(phone, 1, *north(1))
    assert not [frame for frame in await quiet(watcher, 0.8) if frame["type"] == "location"]
    again, first = await watch(server, link["token"])
    assert [(fix["lat"], fix["lon"]) for fix in first["track"]] == [NEAR_101]
    for ws in (watcher, again, phone):
        await ws.close()


async def test_watchers_see_alert_and_never_the_police_view_while_consoles_and_phones_never_see_a_watchers_frame(
        server, engine):
    await add_staff(engine, "command", role="command")
    console, _ = await connect_console(server, login(server, "command"))
    _, token = create_user(server)
    phone, _ = await connect_phone(server, token)
    link = shared(server, token, await start_trip(phone))
    watcher, _ = await watch(server, link["token"])
    await move(phone, 0, *NEAR_101)
    await phone.send(json.dumps(sos_frame()))
    await until_type(phone, "sos_ack")
    await move(phone, 1, *north(1))
    frames = await quiet(watcher, 1.0)
    assert {"type": "trip_status", "status": "alert"} in frames, frames
    assert {frame["type"] for frame in frames} <= {"location", "trip_status"}
    assert not any("alert_id" in frame or "alert" in frame for frame in frames), "the police's view reached a watcher"
    for ws, heard in ((console, await quiet(console, 0.5)), (phone, await quiet(phone, 0.5))):
        assert not [frame for frame in heard if frame["type"] in ("location", "trip")], heard
    for ws in (watcher, console, phone):
        await ws.close()


async def test_a_watcher_on_one_process_follows_a_phone_on_another(test_env):
    first, second = ServerProcess(test_env), ServerProcess(test_env)
    first.start()
    second.start()
    try:
        _, token = create_user(first)
        phone, _ = await connect_phone(first, token)
        trip_id = await start_trip(phone)
        link = shared(second, token, trip_id)
        watcher, _ = await watch(second, link["token"])
        await move(phone, 0, *NEAR_101)
        location = await until_type(watcher, "location")
        assert (location["lat"], location["lon"]) == NEAR_101
        await phone.send(json.dumps({"type": "trip_end", "trip_id": trip_id}))
        assert (await until_type(watcher, "trip_status"))["status"] == "ended"
        revoked = httpx.delete(f"{first.url}/v1/shares/{link['token']}", headers=bearer(token), timeout=5)
        assert revoked.status_code == 204
        async with asyncio.timeout(5):
            await watcher.wait_closed()
        assert watcher.close_code == 1008
        await phone.close()
    finally:
        first.stop()
        second.stop()
