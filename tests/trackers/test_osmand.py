"""Traccar Client (the OsmAnd protocol) at `/osmand`: query string, form and JSON, as the app sends them."""

import time
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa

from server.core import wire
from tests.servers import TAIPEI_101, add_staff, connect_console, create_user, login, quiet, until_type
from tests.trackers.apps import new_external_id, register, traccar_json, track

KNOT_MPS = 1852 / 3600


def osmand_params(external_id: str, ts_s: int, **fields) -> dict:
    """What Traccar Client for Android (the OsmAnd protocol) puts in its query string."""
    return {"id": external_id, "timestamp": str(ts_s), "lat": str(TAIPEI_101[0]), "lon": str(TAIPEI_101[1]),
            "speed": "10.0", "bearing": "45.5", "altitude": "12.0", "accuracy": "8.0", "batt": "77.0",
            "charge": "true", **fields}


def osmand(server, *, method: str = "GET", **options) -> httpx.Response:
    return httpx.request(method, f"{server.url}/osmand", timeout=10, **options)


@pytest.fixture
def tracker(server):
    _, token = create_user(server)
    return token, register(server, token)["external_id"]


def check_stored(fix: dict, ts_s: int) -> None:
    assert (fix["lat"], fix["lon"]) == TAIPEI_101
    assert fix["ts"] == wire.format_time(datetime.fromtimestamp(ts_s, UTC))
    assert fix["speed"] == pytest.approx(10 * KNOT_MPS), "10 knots"
    assert (fix["heading"], fix["alt"], fix["acc"], fix["battery"]) == (45.5, 12.0, 8.0, 77.0)


@pytest.mark.parametrize("how", ["GET query", "POST query", "POST form"])
async def test_an_osmand_report_is_stored_in_the_wire_units_and_read_back(server, tracker, how):
    token, external_id = tracker
    ts_s = int(time.time()) - 30
    params = osmand_params(external_id, ts_s)
    if how == "POST form":
        response = osmand(server, method="POST", data=params)
    else:
        response = osmand(server, method=how.split()[0], params=params)
    assert (response.status_code, response.content) == (200, b"")
    [fix] = track(server, token)
    check_stored(fix, ts_s)


async def test_the_traccar_client_json_body_is_stored_in_the_wire_units(server, tracker):
    token, external_id = tracker
    body = traccar_json(external_id, timestamp="2026-12-01T10:00:00.250Z")
    body["location"]["timestamp"] = wire.format_time(datetime.now(UTC).replace(microsecond=250_000))
    response = osmand(server, method="POST", json=body)
    assert response.status_code == 200, response.text
    [fix] = track(server, token)
    assert (fix["lat"], fix["lon"], fix["ts"]) == (*TAIPEI_101, body["location"]["timestamp"])
    assert (fix["speed"], fix["heading"], fix["acc"], fix["alt"]) == (4.0, 90.0, 12.5, 30.0), "m/s as sent"
    assert fix["battery"] == pytest.approx(64.0), "a level of 0.64 is 64 percent"


async def test_the_sdks_unknown_speed_heading_and_accuracy_are_absent_not_refused(server, tracker):
    token, external_id = tracker
    body = traccar_json(external_id, timestamp=wire.format_time(datetime.now(UTC)), speed=-1, heading=-1,
                        accuracy=-1)
    assert osmand(server, method="POST", json=body).status_code == 200
    [fix] = track(server, token)
    assert (fix["speed"], fix["heading"], fix["acc"]) == (None, None, None)


async def test_a_traccar_client_batch_of_locations_is_stored_each_once(server, tracker):
    token, external_id = tracker
    now = int(time.time())
    locations = [traccar_json(external_id, timestamp=wire.format_time(datetime.fromtimestamp(now - step, UTC)))
                 ["location"] for step in (3, 1, 2, 1)]
    assert osmand(server, method="POST", json={"device_id": external_id, "location": locations}).status_code == 200
    assert [fix["seq"] for fix in track(server, token)] == [(now - step) * 1000 for step in (3, 2, 1)]


async def test_a_timestamp_in_seconds_milliseconds_or_iso_8601_is_the_same_fix(server, tracker):
    token, external_id = tracker
    ts_s = int(time.time()) - 10
    for timestamp in (str(ts_s), str(ts_s * 1000), datetime.fromtimestamp(ts_s, UTC).isoformat(),
                      datetime.fromtimestamp(ts_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")):
        response = osmand(server, params=osmand_params(external_id, ts_s, timestamp=timestamp))
        assert response.status_code == 200, (timestamp, response.text)
    [fix] = track(server, token)
    assert fix["seq"] == ts_s * 1000, "one fix, stored once"


async def test_location_may_stand_for_lat_and_lon_and_must_agree_with_them(server, tracker):
    token, external_id = tracker
    ts_s = int(time.time()) - 20
    params = osmand_params(external_id, ts_s, location=f"{TAIPEI_101[0]},{TAIPEI_101[1]}")
    del params["lat"], params["lon"]
    assert osmand(server, params=params).status_code == 200
    agreeing = osmand_params(external_id, ts_s + 1, location=f"{TAIPEI_101[0]:.6f},{TAIPEI_101[1]:.6f}")
    assert osmand(server, params=agreeing).status_code == 200
    disagreeing = osmand_params(external_id, ts_s + 2, location="25.1,121.6")
    response = osmand(server, params=disagreeing)
    assert response.status_code == 400 and response.json()["field"] == "location"
    assert "disagree" in response.json()["message"]
    assert len(track(server, token)) == 2


async def test_an_unknown_or_missing_device_id_stores_nothing(server, tracker):
    token, external_id = tracker
    response = osmand(server, params=osmand_params(new_external_id(), int(time.time())))
    assert (response.status_code, response.json()["code"]) == (404, "not_found")
    params = osmand_params(external_id, int(time.time()))
    del params["id"]
    assert osmand(server, params=params).status_code == 400
    assert osmand(server, params=osmand_params(external_id.upper(), int(time.time()))).status_code == 404
    assert track(server, token) == []


@pytest.mark.parametrize("change, field", [
    ({"lat": "91"}, "lat"), ({"lon": "-180.5"}, "lon"), ({"lat": "nan"}, "lat"), ({"lat": "inf"}, "lat"),
    ({"lat": "1_0"}, "lat"), ({"lat": "25,03"}, "lat"), ({"lat": ""}, "lat"), ({"speed": "-3"}, "speed"),
    ({"speed": "1e9"}, "speed"), ({"batt": "101"}, "batt"), ({"bearing": "361"}, "bearing"),
    ({"accuracy": "-2"}, "accuracy"), ({"altitude": "1e400"}, "altitude"),
    ({"timestamp": "2026-12-01 10:00:00"}, "timestamp"), ({"timestamp": "2026-12-01T10:00:00"}, "timestamp"),
    ({"timestamp": "yesterday"}, "timestamp"), ({"timestamp": "-5"}, "timestamp"),
    ({"timestamp": "9" * 30}, "timestamp"), ({"timestamp": "1.5"}, "timestamp"),
    ({"location": "25.03"}, "location"), ({"location": "a,b"}, "location"),
])
async def test_impossible_osmand_values_are_400_with_the_reason_and_store_nothing(server, tracker, change, field):
    token, external_id = tracker
    response = osmand(server, params=osmand_params(external_id, int(time.time())) | change)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field and response.json()["message"]
    assert track(server, token) == []


@pytest.mark.parametrize("body", [
    b"{not json", b"[]", b'"x"', b'{"device_id": 5, "location": {}}', b"\xff\xfe\x00",
    b'{"device_id":"{id}","location":' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"device_id":"{id}","location":{"timestamp":"2026-12-01T10:00:00Z","coords":{"latitude":NaN}}}',
    b'{"device_id":"{id}","location":{"timestamp":' + b"9" * 400 + b',"coords":{"latitude":1,"longitude":2}}}',
    b'{"device_id":"{id}","location":"here"}', b'{"device_id":"{id}"}',
])
async def test_garbage_osmand_json_bodies_are_400(server, tracker, body):
    token, external_id = tracker
    response = osmand(server, method="POST", content=body.replace(b"{id}", external_id.encode()),
                      headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert track(server, token) == []


async def test_a_huge_osmand_body_is_413(server, tracker):
    _, external_id = tracker
    response = osmand(server, method="POST", data=osmand_params(external_id, int(time.time()), pad="x" * 70_000))
    assert response.status_code == 413


async def alert_rows(engine, user_id: str) -> list[dict]:
    async with engine.connect() as connection:
        rows = await connection.execute(sa.text(
            "SELECT alert_id, sos_id, quality, suspect, ST_Y(location) AS lat FROM alerts WHERE user_id = :user_id"),
            {"user_id": user_id})
        return [dict(row._mapping) for row in rows]


async def test_alarm_sos_raises_an_alert_that_reaches_the_console_once_however_often_it_is_resent(server, engine):
    user_id, token = create_user(server, name="Pat Osm")
    external_id = register(server, token)["external_id"]
    await add_staff(engine, "osm-dispatcher")
    console, _ = await connect_console(server, login(server, "osm-dispatcher"))
    params = osmand_params(external_id, int(time.time()), alarm="sos")
    assert osmand(server, params=params).status_code == 200
    opened = await until_type(console, "alert_opened")
    assert opened["alert"]["user"]["name"] == "Pat Osm"
    assert opened["alert"]["location"]["lat"] == TAIPEI_101[0]
    [alert] = await alert_rows(engine, user_id)
    assert str(alert["alert_id"]) == opened["alert"]["alert_id"], "committed before the 200"
    for method in ("GET", "POST"):  # the app resends the report it did not hear answered
        assert osmand(server, method=method, params=params).status_code == 200
    assert len(await alert_rows(engine, user_id)) == 1, "one alert: the same device and timestamp"
    assert not [frame for frame in await quiet(console, 0.5) if frame["type"] == "alert_opened"]
    assert len(track(server, token)) == 1, "its fix is in the track too"
    await console.close()


async def test_the_traccar_client_sos_in_its_json_body_raises_an_alert(server, engine):
    user_id, token = create_user(server)
    external_id = register(server, token)["external_id"]
    body = traccar_json(external_id, timestamp=wire.format_time(datetime.now(UTC)), alarm="sos")
    assert osmand(server, method="POST", json=body).status_code == 200
    assert osmand(server, method="POST", json=body).status_code == 200
    [alert] = await alert_rows(engine, user_id)
    assert alert["quality"] == "fix"


@pytest.mark.parametrize("change", [{"lat": "95"}, {"lat": "nan", "lon": "x"}, {"timestamp": "garbage"},
                                    {"lat": "", "lon": ""}, {"speed": "-40", "batt": "900"}])
async def test_an_sos_with_an_impossible_fix_is_never_filtered(server, engine, change):
    user_id, token = create_user(server)
    external_id = register(server, token)["external_id"]
    response = osmand(server, params=osmand_params(external_id, int(time.time())) | change | {"alarm": "sos"})
    assert response.status_code == 200, response.text
    [alert] = await alert_rows(engine, user_id)
    assert alert["quality"] in ("fix", "suspect", "unknown", "last_known")
