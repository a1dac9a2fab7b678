"""Trips end to end: check in on the phone socket and over HTTP, one at a time, end, list,
the logged route; and the check-ins a hostile or careless phone sends."""

import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.servers import bearer, connect_phone, create_user, receive, until_ack, until_type

TAIPEI_101 = (25.0339, 121.5645)


def ahead(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def taxi(**fields) -> dict:
    return {"type": "trip_start", "kind": "taxi", "plate": "abc 1234", "driver_name": "Chen Wei",
            "vehicle": {"make": "Toyota Wish", "colour": "yellow"},
            "destination": {"lat": 25.0478, "lon": 121.5170}, "eta": ahead(1800), **fields}


def hike(**fields) -> dict:
    return {"type": "trip_start", "kind": "hike", "expected_return": ahead(4 * 3600),
            "planned_route": {"type": "LineString", "coordinates": [[121.57, 25.03], [121.58, 25.04], [121.59, 25.03]]},
            **fields}


async def test_a_taxi_check_in_on_the_socket_is_answered_with_its_trip_normalised(server):
    _, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    async with ws:
        await ws.send(json.dumps(taxi()))
        started = await until_type(ws, "trip_started")
    assert started["kind"] == "taxi" and started["status"] == "active" and started["due_at"]
    trip = httpx.get(f"{server.url}/v1/trips/{started['trip_id']}", headers=bearer(token), timeout=5).json()
    assert (trip["plate"], trip["driver_name"], trip["vehicle"]) == \
        ("ABC-1234", "Chen Wei", {"make": "Toyota Wish", "colour": "yellow"})
    assert trip["destination"] == {"lat": 25.0478, "lon": 121.517}
    # A ride is due at its ETA plus the grace (10 min by default).
    due, eta = datetime.fromisoformat(trip["due_at"]), datetime.fromisoformat(trip["eta"])
    assert due - eta == timedelta(minutes=10)


async def test_a_second_trip_is_refused_conflict_and_replaces_the_first_only_when_asked(server):
    _, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    async with ws:
        await ws.send(json.dumps(taxi()))
        first = await until_type(ws, "trip_started")
        await ws.send(json.dumps(hike()))
        refused = await until_type(ws, "error")
        assert refused["code"] == "conflict"
        await ws.send(json.dumps(hike(replace=True)))
        second = await until_type(ws, "trip_started")
    trips = httpx.get(f"{server.url}/v1/trips", headers=bearer(token), timeout=5).json()["trips"]
    assert [(trip["trip_id"], trip["status"]) for trip in trips] == \
        [(second["trip_id"], "active"), (first["trip_id"], "ended")]
    assert trips[0]["planned_route"]["coordinates"][0] == [121.57, 25.03]


async def test_trip_end_ends_it_once_and_someone_elses_trip_is_not_found(server):
    _, token = create_user(server)
    _, stranger = create_user(server, name="Mallory")
    ws, _ = await connect_phone(server, token)
    async with ws:
        await ws.send(json.dumps(hike()))
        trip_id = (await until_type(ws, "trip_started"))["trip_id"]
        other, _ = await connect_phone(server, stranger)
        async with other:
            await other.send(json.dumps({"type": "trip_end", "trip_id": trip_id}))
            assert (await until_type(other, "error"))["code"] == "not_found"
        assert httpx.post(f"{server.url}/v1/trips/{trip_id}/end", headers=bearer(stranger), timeout=5).status_code == 404
        assert httpx.get(f"{server.url}/v1/trips/{trip_id}", headers=bearer(stranger), timeout=5).status_code == 404
        await ws.send(json.dumps({"type": "trip_end", "trip_id": trip_id}))
        assert (await until_type(ws, "trip_ended"))["trip_id"] == trip_id
        await ws.send(json.dumps({"type": "trip_end", "trip_id": trip_id}))
        assert (await until_type(ws, "error"))["code"] == "conflict"
    # Over: a new trip needs no replace.
    response = httpx.post(f"{server.url}/v1/trips", headers=bearer(token), json={"kind": "walk", "eta": ahead(600)},
                          timeout=5)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(("fields", "field"), [
    ({"plate": "AB"}, None),  # 2 characters is a plate
    ({"plate": "A"}, "plate"),
    ({"plate": "ABCDEFGHJ"}, "plate"),
    ({"plate": "AB<script>"}, "plate"),
    ({"plate": ""}, "plate"),
    ({"plate": None}, "plate"),
    ({"plate": 1234}, "plate"),
    ({"plate": "ΑΒΓ-123"}, "plate"),
    ({"eta": "2001-01-01T00:00:00Z"}, "eta"),
    ({"eta": "tomorrow"}, "eta"),
    ({"eta": 10**30}, "eta"),
    ({"destination": {"lat": 91, "lon": 0}}, "destination.lat"),
    ({"destination": {"lat": 25}}, "destination.lon"),
    ({"destination": {"lat": True, "lon": 121}}, "destination.lat"),
    ({"vehicle": {"make": "x" * 101}}, "vehicle.make"),
    ({"vehicle": {"wheels": 4}}, "vehicle"),
    ({"driver_name": ["a"]}, "driver_name"),
    ({"kind": "boat"}, "kind"),
])
async def test_an_impossible_taxi_check_in_is_refused_naming_its_field(server, fields, field):
    _, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    async with ws:
        await ws.send(json.dumps(taxi(**fields)))
        answer = await receive(ws)
        while answer["type"] not in ("error", "trip_started"):
            answer = await receive(ws)
    if field is None:
        assert answer["type"] == "trip_started", answer
    else:
        assert (answer["type"], answer["code"], answer.get("field")) == ("error", "invalid_field", field), answer


@pytest.mark.parametrize(("fields", "field"), [
    ({"expected_return": None}, "expected_return"),
    ({"expected_return": ahead(-60)}, "expected_return"),
    ({"expected_return": ahead(30 * 86400)}, "expected_return"),
    ({"planned_route": {"type": "Point", "coordinates": [121.5, 25.0]}}, "planned_route"),
    ({"planned_route": {"type": "MultiLineString", "coordinates": [[[121.5, 25.0], [121.6, 25.1]]]}}, "planned_route"),
    ({"planned_route": {"type": "LineString", "coordinates": [[121.5, 25.0]]}}, "planned_route"),
    ({"planned_route": {"type": "LineString", "coordinates": [[200, 25.0], [121.6, 25.1]]}}, "planned_route"),
    ({"planned_route": {"type": "LineString", "coordinates": [["121.5", "25.0"], [121.6, 25.1]]}}, "planned_route"),
    ({"planned_route": "LINESTRING(121.5 25, 121.6 25.1)"}, "planned_route"),
    ({"plate": "ABC-1234"}, "plate"),
])
async def test_an_impossible_hike_check_in_is_refused_naming_its_field(server, fields, field):
    _, token = create_user(server)
    response = httpx.post(f"{server.url}/v1/trips", headers=bearer(token),
                          json={key: value for key, value in hike(**fields).items() if key != "type"}, timeout=5)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


async def test_a_planned_route_too_long_for_a_frame_comes_as_a_file_and_over_the_vertex_limit_is_refused(server):
    _, token = create_user(server)
    points = "".join(f'<trkpt lat="{25.0 + i * 1e-5:.6f}" lon="{121.5 + i * 1e-5:.6f}"/>' for i in range(10_000))
    gpx = f'<?xml version="1.0"?><gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>{points}</trkseg></trk></gpx>'
    body = {"kind": "hike", "expected_return": ahead(3600)}
    response = httpx.post(f"{server.url}/v1/trips", headers=bearer(token), timeout=10,
                          files={"trip": (None, json.dumps(body), "application/json"),
                                 "route": ("route.gpx", gpx.encode(), "application/gpx+xml")})
    assert response.status_code == 201, response.text
    assert len(response.json()["trip"]["planned_route"]["coordinates"]) == 10_000
    over = gpx.replace("</trkseg>", '<trkpt lat="25.2" lon="121.7"/></trkseg>')
    response = httpx.post(f"{server.url}/v1/trips", headers=bearer(token), timeout=10,
                          files={"trip": (None, json.dumps({**body, "replace": True}), "application/json"),
                                 "route": ("route.gpx", over.encode(), "application/gpx+xml")})
    assert (response.status_code, response.json()["field"]) == (422, "planned_route")


@pytest.mark.parametrize("route", [
    b"not xml at all <<<",
    b'<?xml version="1.0"?><!DOCTYPE gpx [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><gpx><trk><name>&c;</name></trk></gpx>',
    b'<?xml version="1.0"?><!DOCTYPE gpx [<!ENTITY x SYSTEM "file:///etc/passwd">]><gpx><trk><name>&x;</name></trk></gpx>',
    b'{"type": "Point", "coordinates": [121.5, 25.0]}',
])
async def test_a_hostile_route_file_is_refused_and_the_server_serves_on(server, route):
    _, token = create_user(server)
    response = httpx.post(f"{server.url}/v1/trips", headers=bearer(token), timeout=10,
                          files={"trip": (None, json.dumps({"kind": "hike", "expected_return": ahead(3600)})),
                                 "route": ("route.gpx", route, "application/octet-stream")})
    assert (response.status_code, response.json()["field"]) == (422, "planned_route"), response.text
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200


async def test_a_route_file_over_the_upload_bound_is_refused_too_large(server):
    _, token = create_user(server)
    response = httpx.post(f"{server.url}/v1/trips", headers=bearer(token), timeout=20,
                          files={"trip": (None, json.dumps({"kind": "hike", "expected_return": ahead(3600)})),
                                 "route": ("route.gpx", b" " * (7 * 1024 * 1024), "application/gpx+xml")})
    assert response.status_code == 413


async def test_the_logged_route_is_the_trips_fixes_only_from_check_in_to_end(server):
    _, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    async with ws:
        now_ms = int(time.time() * 1000)
        # The offline buffer of before the check-in is stored, but is not the trip's route.
        before = [{"seq": i, "ts": now_ms - 600_000 + i * 1000, "lat": 25.0, "lon": 121.5} for i in range(3)]
        await ws.send(json.dumps({"type": "batch", "pings": before}))
        await until_ack(ws, 2)
        await ws.send(json.dumps(taxi()))
        trip_id = (await until_type(ws, "trip_started"))["trip_id"]
        during = [{"seq": 3 + i, "ts": int(time.time() * 1000) + i,
                   "lat": TAIPEI_101[0] + i * 1e-4, "lon": TAIPEI_101[1]} for i in range(5)]
        await ws.send(json.dumps({"type": "batch", "pings": during}))
        await until_ack(ws, 7)
        await ws.send(json.dumps({"type": "trip_end", "trip_id": trip_id}))
        await until_type(ws, "trip_ended")
        after = [{"seq": 8, "ts": int(time.time() * 1000) + 60_000, "lat": 25.1, "lon": 121.6}]
        await ws.send(json.dumps({"type": "batch", "pings": after}))
        await until_ack(ws, 8)
    geojson = httpx.get(f"{server.url}/v1/trips/{trip_id}/track", headers=bearer(token), timeout=5).json()
    assert [feature["properties"]["seq"] for feature in geojson["features"]] == [3, 4, 5, 6, 7]
    gpx = httpx.get(f"{server.url}/v1/trips/{trip_id}/track?format=gpx", headers=bearer(token), timeout=5)
    assert gpx.headers["content-type"].startswith("application/gpx+xml") and gpx.text.count("<trkpt") == 5
    # Simplified for display, a straight walk keeps its two ends.
    simple = httpx.get(f"{server.url}/v1/trips/{trip_id}/track?simplify_m=5", headers=bearer(token), timeout=5).json()
    assert [feature["properties"]["seq"] for feature in simple["features"]] == [3, 7]
    assert httpx.get(f"{server.url}/v1/trips/{trip_id}/track?simplify_m=nan", headers=bearer(token),
                     timeout=5).status_code == 422
