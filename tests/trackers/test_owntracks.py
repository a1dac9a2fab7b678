"""OwnTracks in HTTP mode at `POST /owntracks/pub`, replayed as its apps send it."""

import json
import time

import httpx
import pytest

from server.core import wire
from tests.servers import (TAIPEI_101, add_staff, bearer, connect_console, connect_phone, create_user, login,
                           sos_frame, until_type)
from tests.trackers.apps import basic, owntracks_location, publish, track


async def test_an_owntracks_location_is_stored_in_the_wire_units_and_read_back_through_the_track(server):
    _, token = create_user(server)
    tst = int(time.time()) - 60
    response = publish(server, token, owntracks_location(tst=tst))
    assert (response.status_code, response.json()) == (200, [])
    [fix] = track(server, token)
    assert (fix["lat"], fix["lon"]) == TAIPEI_101
    assert fix["ts"] == wire.format_time(wire.EPOCH.fromtimestamp(tst, wire.EPOCH.tzinfo))
    assert fix["speed"] == pytest.approx(10.0), "36 km/h is 10 m/s"
    assert (fix["heading"], fix["battery"], fix["acc"], fix["alt"]) == (270, 41, 5, 13)
    assert fix["seq"] == tst * 1000, "its seq is its time in ms"


async def test_a_resent_owntracks_queue_in_any_order_is_stored_once_each(server):
    _, token = create_user(server)
    now = int(time.time())
    messages = [owntracks_location(tst=now - 30 + step, at=(25.03 + step / 1000, 121.56)) for step in range(3)]
    for message in [messages[2], messages[0], messages[2], messages[1], messages[0]]:
        assert publish(server, token, message).status_code == 200
    assert [fix["seq"] for fix in track(server, token)] == [(now - 30 + step) * 1000 for step in range(3)]


@pytest.mark.parametrize("message", [
    b"",
    {"_type": "transition", "wtst": 1425042603, "lat": 25.03, "lon": 121.56, "tst": 1427634603, "acc": 130,
     "tid": "JP", "event": "enter", "desc": "home", "t": "c"},
    {"_type": "waypoint", "desc": "home", "lat": 25.03, "lon": 121.56, "rad": 50, "tst": 1433598071},
    {"_type": "waypoints", "waypoints": [{"_type": "waypoint", "tst": 1, "lat": 1.0, "lon": 2.0, "rad": 5}]},
    {"_type": "lwt", "tst": 1380738247},
    {"_type": "card", "name": "Ann Lin", "face": "iVBORw0KGgo="},
    {"_type": "status", "android": {"hib": 1, "bo": 1, "loc": 0}},
    {"_type": "steps", "tst": 1400455130, "steps": 1234, "from": 1400455130, "to": 1400458000},
    {"_type": "beacon", "uuid": "CA271EAE-5FA8-4E80-8F08-2A302A95A959", "major": 1, "minor": 1},
], ids=["empty", "transition", "waypoint", "waypoints", "lwt", "card", "status", "steps", "beacon"])
async def test_owntracks_messages_other_than_a_location_are_accepted_and_store_nothing(server, message):
    _, token = create_user(server)
    response = publish(server, token, message)
    assert (response.status_code, response.json()) == (200, [])
    assert track(server, token) == []


async def test_an_encrypted_owntracks_message_is_refused_with_a_clear_400(server):
    _, token = create_user(server)
    response = publish(server, token, {"_type": "encrypted", "data": "1Vu7OwpW4lMnh28FB+el22GsCrlngg=="})
    assert response.status_code == 400
    assert "encrypt" in response.json()["message"] and response.json()["field"] == "_type"


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer {token}"}, basic("not-a-token"), basic(""), {"Authorization": "Basic !!!"},
    {"Authorization": "Basic " + "YQ=="},  # "a": no colon, no password
], ids=["none", "bearer", "wrong", "empty", "not-base64", "no-password"])
async def test_owntracks_without_the_token_as_password_is_401_with_a_basic_challenge(server, headers):
    _, token = create_user(server)
    headers = {name: value.replace("{token}", token) for name, value in headers.items()}
    response = httpx.post(f"{server.url}/owntracks/pub", json=owntracks_location(), headers=headers, timeout=10)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic")
    assert track(server, token) == []


async def test_any_owntracks_user_name_is_taken_with_the_token(server):
    _, token = create_user(server)
    assert publish(server, token, owntracks_location(), **basic(token, user="whatever:else")).status_code == 200
    assert len(track(server, token)) == 1


async def test_while_an_alert_is_open_owntracks_is_asked_for_a_fix_and_its_fixes_reach_the_console(server, engine):
    _, token = create_user(server)
    await add_staff(engine, "own-dispatcher")
    console, _ = await connect_console(server, login(server, "own-dispatcher"))
    assert publish(server, token, owntracks_location()).json() == [], "no alert: nothing asked"
    sos = sos_frame()
    assert httpx.post(f"{server.url}/v1/sos", json={k: v for k, v in sos.items() if k != "type"},
                      headers=bearer(token), timeout=10).status_code == 201
    opened = await until_type(console, "alert_opened")
    # Whole seconds: a second ahead of the SOS's fix (in ms), so newer than the alert's location.
    later = owntracks_location(tst=int(time.time()) + 2, at=(25.0341, 121.5647))
    assert publish(server, token, later).json() == [{"_type": "cmd", "action": "reportLocation"}]
    moved = await until_type(console, "alert_location", alert_id=opened["alert"]["alert_id"])
    assert (moved["lat"], moved["lon"]) == (25.0341, 121.5647)
    await console.close()


async def test_the_apps_resume_point_is_not_moved_by_the_users_owntracks(server):
    _, token = create_user(server)
    pings = [{"seq": seq, "ts": int(time.time() * 1000) - 60_000 + seq, "lat": 25.03, "lon": 121.56}
             for seq in range(3)]
    assert httpx.post(f"{server.url}/v1/pings", json={"pings": pings}, headers=bearer(token),
                      timeout=10).json()["seq"] == 2
    assert publish(server, token, owntracks_location()).status_code == 200
    ws, welcome = await connect_phone(server, token)
    assert welcome["acked_seq"] == 2, "the tracker's time-derived seqs are not the app's"
    await ws.close()
    assert len(track(server, token)) == 4


@pytest.mark.parametrize("change, field", [
    ({"lat": 95.0}, "lat"), ({"lon": -181.0}, "lon"), ({"vel": -5}, "vel"), ({"vel": 1e9}, "vel"),
    ({"batt": 150}, "batt"), ({"cog": 400}, "cog"), ({"acc": -1}, "acc"), ({"tst": -5}, "tst"),
    ({"tst": 10**15}, "tst"), ({"tst": 1.5}, "tst"), ({"lat": "25.03"}, "lat"), ({"lat": True}, "lat"),
    ({"lat": None}, "lat"), ({"tst": None}, "tst"),
])
async def test_impossible_owntracks_values_are_400_with_the_field_and_store_nothing(server, change, field):
    _, token = create_user(server)
    response = publish(server, token, owntracks_location() | change)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert track(server, token) == []


@pytest.mark.parametrize("body, code", [
    (b"{not json", "bad_json"), (b"[1, 2]", "invalid_field"), (b'"location"', "invalid_field"),
    (b'{"lat": 1}', "invalid_field"), (b"\xff\xfe", "bad_json"),
    (b'{"_type":"location","x":' + b"[" * 5000 + b"]" * 5000 + b"}", "invalid_field"),
])
async def test_garbage_owntracks_bodies_are_400(server, body, code):
    _, token = create_user(server)
    response = publish(server, token, body, **{"Content-Type": "application/json"})
    assert (response.status_code, response.json()["code"]) == (400, code), response.text


async def test_a_huge_owntracks_body_is_413(server):
    _, token = create_user(server)
    message = owntracks_location(desc="x" * 70_000)
    assert publish(server, token, json.dumps(message).encode()).status_code == 413
