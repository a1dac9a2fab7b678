"""HTTP for the same data: accounts, the batch fallback, last location, track."""

import asyncio
import time
from xml.etree import ElementTree as ET

import httpx
import pytest

from tests.servers import bearer, create_user, stored_pings

TAIPEI_101 = (25.0339, 121.5645)


def now_ms() -> int:
    return int(time.time() * 1000)


def walk(count: int, start_ms: int, first_seq: int = 0) -> list[dict]:
    return [
        {"seq": first_seq + i, "ts": start_ms + i * 1000, "lat": TAIPEI_101[0] + i * 1e-4, "lon": TAIPEI_101[1],
         "alt": 10.0 + i}
        for i in range(count)
    ]


async def test_create_user_returns_an_id_and_a_token_stored_only_as_a_hash(server, engine):
    import sqlalchemy as sa

    user_id, token = create_user(server)
    async with engine.connect() as connection:
        stored = (await connection.execute(sa.text("SELECT * FROM devices WHERE user_id = :u"), {"u": user_id})).one()
    assert len(stored.token_sha256) == 32 and token.encode() not in bytes(stored.token_sha256)
    assert token not in str(dict(stored._mapping))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Ann"}, "phone"),
        ({"name": "", "phone": "+886912345678"}, "name"),
        ({"name": "Ann", "phone": "call me"}, "phone"),
        ({"name": "Ann", "phone": 886912345678}, "phone"),
    ],
)
def test_create_user_refuses_bad_bodies(server, body, field):
    response = httpx.post(f"{server.url}/v1/users", json=body)
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_field" and response.json()["field"] == field


def test_create_user_refuses_non_json(server):
    response = httpx.post(f"{server.url}/v1/users", content=b"{nope", headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["code"] == "bad_json"


async def test_post_pings_answers_with_the_ack_after_commit(server, engine):
    user_id, token = create_user(server)
    pings = walk(5, now_ms() - 10_000)
    pings[3]["battery"] = 250
    response = httpx.post(f"{server.url}/v1/pings", json={"pings": pings}, headers=bearer(token))
    assert response.status_code == 200
    body = response.json()
    assert body["type"] == "ack" and body["seq"] == 4
    assert [(e["code"], e["field"], e["seq"]) for e in body["errors"]] == [("invalid_field", "battery", 3)]
    assert [row["seq"] for row in await stored_pings(engine, user_id)] == [0, 1, 2, 4]
    # A retry of the same batch stores nothing twice.
    again = httpx.post(f"{server.url}/v1/pings", json=pings, headers=bearer(token))
    assert again.status_code == 200 and again.json()["seq"] == 4
    assert len(await stored_pings(engine, user_id)) == 4


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "unauthorized"),
        ({"Authorization": "Bearer wrong"}, 401, "unauthorized"),
        ({"Authorization": "Basic d3Jvbmc="}, 401, "unauthorized"),
    ],
)
def test_post_pings_needs_a_device_token(server, headers, status, code):
    response = httpx.post(f"{server.url}/v1/pings", json=walk(1, now_ms()), headers=headers)
    assert (response.status_code, response.json()["code"]) == (status, code)


def test_a_token_in_the_query_string_does_not_authenticate_http(server):
    _, token = create_user(server)
    response = httpx.post(f"{server.url}/v1/pings?token={token}&access_token={token}", json=walk(1, now_ms()))
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"{not json", 400, "bad_json"),
        (b'{"pings": 7}', 422, "invalid_field"),
        (b'"hello"', 422, "invalid_field"),
    ],
)
def test_post_pings_refuses_bad_bodies(server, content, status, code):
    _, token = create_user(server)
    response = httpx.post(f"{server.url}/v1/pings", content=content, headers=bearer(token))
    assert (response.status_code, response.json()["code"]) == (status, code)


async def test_a_batch_posted_into_a_full_queue_is_429_rate_limited_and_stores_nothing(fresh_server, engine):
    server = fresh_server(GUARDIAN_INGEST_QUEUE_ROWS="1", GUARDIAN_FLUSH_INTERVAL_MS="2000")
    user_id, token = create_user(server)
    start = now_ms() - 60_000
    async with httpx.AsyncClient(base_url=server.url, headers=bearer(token), timeout=10) as client:
        first = asyncio.create_task(client.post("/v1/pings", json={"pings": walk(3, start)}))
        await asyncio.sleep(0.5)  # the first batch now fills the queue until its flush
        second = await client.post("/v1/pings", json={"pings": walk(3, start + 3000, first_seq=3)})
        assert second.status_code == 429 and second.json()["code"] == "rate_limited", second.text
        assert (await first).json()["seq"] == 2
        again = await client.post("/v1/pings", json={"pings": walk(3, start + 3000, first_seq=3)})
        assert again.status_code == 200 and again.json()["seq"] == 5
    assert [row["seq"] for row in await stored_pings(engine, user_id)] == list(range(6))


def test_post_pings_refuses_more_than_1000(server):
    _, token = create_user(server)
    compact = [{"seq": i, "ts": 1, "lat": 0, "lon": 0} for i in range(1001)]
    response = httpx.post(f"{server.url}/v1/pings", json=compact, headers=bearer(token))
    assert (response.status_code, response.json()["code"]) == (413, "too_large")


def test_post_pings_refuses_a_body_over_64_kib(server):
    _, token = create_user(server)
    response = httpx.post(f"{server.url}/v1/pings", content=b"[" + b" " * 70_000 + b"]", headers=bearer(token))
    assert (response.status_code, response.json()["code"]) == (413, "too_large")


def test_last_location_is_404_until_a_fix_then_the_newest_plausible_one(server):
    _, token = create_user(server)
    response = httpx.get(f"{server.url}/v1/me/location", headers=bearer(token))
    assert (response.status_code, response.json()["code"]) == (404, "not_found")
    httpx.post(f"{server.url}/v1/pings", json=walk(3, now_ms() - 5000), headers=bearer(token))
    location = httpx.get(f"{server.url}/v1/me/location", headers=bearer(token)).json()
    assert location["lat"] == pytest.approx(TAIPEI_101[0] + 2e-4) and location["ts"].endswith("Z")


def test_track_as_geojson_covers_the_requested_window(server):
    _, token = create_user(server)
    start = now_ms() - 60_000
    httpx.post(f"{server.url}/v1/pings", json=walk(10, start), headers=bearer(token))
    response = httpx.get(f"{server.url}/v1/me/track", params={"from": start + 2000, "to": start + 5000},
                         headers=bearer(token))
    assert response.status_code == 200 and response.headers["content-type"] == "application/geo+json"
    features = response.json()["features"]
    assert [f["properties"]["seq"] for f in features] == [2, 3, 4, 5]
    assert features[0]["geometry"] == {"type": "Point", "coordinates": [TAIPEI_101[1], TAIPEI_101[0] + 2e-4]}


def test_track_as_gpx_is_a_gpx_1_1_track(server):
    _, token = create_user(server)
    httpx.post(f"{server.url}/v1/pings", json=walk(3, now_ms() - 10_000), headers=bearer(token))
    response = httpx.get(f"{server.url}/v1/me/track", params={"format": "gpx"}, headers=bearer(token))
    assert response.headers["content-type"] == "application/gpx+xml"
    root = ET.fromstring(response.content)
    ns = {"gpx": "http://www.topografix.com/GPX/1/1"}
    assert root.tag == "{http://www.topografix.com/GPX/1/1}gpx" and root.get("version") == "1.1"
    points = root.findall("gpx:trk/gpx:trkseg/gpx:trkpt", ns)
    assert len(points) == 3 and float(points[0].get("lat")) == pytest.approx(TAIPEI_101[0])
    assert points[2].find("gpx:ele", ns).text == "12.0"


@pytest.mark.parametrize(
    ("params", "field"),
    [({"from": "last tuesday"}, "from"), ({"to": "2026-01-01T00:00:00"}, "to"),
     ({"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from")],
)
def test_track_refuses_bad_windows(server, params, field):
    _, token = create_user(server)
    response = httpx.get(f"{server.url}/v1/me/track", params=params, headers=bearer(token))
    assert (response.status_code, response.json()["field"]) == (422, field)


def test_track_refuses_an_unknown_format(server):
    _, token = create_user(server)
    response = httpx.get(f"{server.url}/v1/me/track", params={"format": "kml"}, headers=bearer(token))
    assert (response.status_code, response.json()["code"]) == (422, "invalid_field")


@pytest.mark.parametrize(("method", "path", "body", "field"), [
    ("POST", "/v1/users", {"name": "Ann\x00", "phone": "+886912345678"}, "name"),
    ("POST", "/v1/users", {"name": "Ann", "phone": "+8869123\x0045678"}, "phone"),
    ("PUT", "/v1/me/contacts", {"contacts": [{"name": "M\x00um", "phone": "0912345678"}]}, "contacts.0.name"),
    ("POST", "/v1/me/push-token", {"fcm_token": "t" * 30 + "\x00"}, "fcm_token"),
    ("POST", "/v1/console/login", {"username": "admin\x00", "password": "x"}, "username"),
])
def test_text_postgresql_cannot_store_is_422_invalid_field(server, method, path, body, field):
    _, token = create_user(server)
    response = httpx.request(method, f"{server.url}{path}", json=body, headers=bearer(token))
    assert response.status_code == 422, response.text
    assert (response.json()["code"], response.json()["field"]) == ("invalid_field", field)


@pytest.mark.parametrize("phone", ["call 0912345678 pls <script>", "x0912345678", "0912345678\n"])
def test_a_contact_phone_is_a_whole_phone_number_not_one_inside_text(server, phone):
    _, token = create_user(server)
    response = httpx.put(f"{server.url}/v1/me/contacts", json={"contacts": [{"name": "Mum", "phone": phone}]},
                         headers=bearer(token))
    assert (response.status_code, response.json()["field"]) == (422, "contacts.0.phone")


def test_a_body_nested_1000_deep_is_400_bad_json(server):
    body = '{"name":"Ann","phone":"+886912345678","x":' + "[" * 1000 + "]" * 1000 + "}"
    response = httpx.post(f"{server.url}/v1/users", content=body, headers={"content-type": "application/json"})
    assert (response.status_code, response.json()["code"]) == (400, "bad_json")


@pytest.mark.parametrize(("params", "field"), [
    ({"from": "\u00b2"}, "from"), ({"from": "1\u00b2"}, "from"), ({"to": "9" * 5000}, "to"),
    ({"to": "9999-12-31T23:30:00-01:00"}, "to"), ({"from": "0001-01-01T00:30:00+01:00"}, "from"),
])
def test_track_times_that_are_no_time_are_422_not_500(server, params, field):
    _, token = create_user(server)
    response = httpx.get(f"{server.url}/v1/me/track", params=params, headers=bearer(token))
    assert (response.status_code, response.json()["code"], response.json()["field"]) == (422, "invalid_field", field)


async def test_post_pings_refuses_what_storage_cannot_hold_and_stores_the_rest(server, engine):
    user_id, token = create_user(server)
    pings = walk(4, now_ms() - 10_000)
    pings[1]["seq"] = 2**63
    pings[2]["ts"] = "9999-12-31T23:30:00-01:00"
    response = httpx.post(f"{server.url}/v1/pings", json={"pings": pings}, headers=bearer(token))
    assert response.status_code == 200, response.text
    assert [(error["code"], error["field"]) for error in response.json()["errors"]] == [
        ("invalid_field", "seq"), ("invalid_field", "ts")]
    assert [row["seq"] for row in await stored_pings(engine, user_id)] == [0, 3]


@pytest.mark.parametrize("over", ["http", "socket"])
async def test_a_seq_resent_with_another_device_time_is_acked_and_stored_once(server, engine, over):
    """(device, seq) is the ping's identity: the history's key has the device time in it (its
    partitions are days), so a resend dated otherwise, even on another day, is caught apart."""
    from tests.servers import connect_phone, until_ack

    user_id, token = create_user(server)
    now_ms = int(time.time() * 1000)
    times = [now_ms, now_ms - 1000, now_ms - 2 * 86_400_000, now_ms + 3000]
    pings = [{"type": "ping", "seq": 5, "ts": ts, "lat": 25.0339, "lon": 121.5645, "acc": 5.0} for ts in times]
    if over == "http":
        for ping in pings:
            answer = httpx.post(f"{server.url}/v1/pings", json={"type": "pings", "pings": [ping]},
                                headers=bearer(token), timeout=10)
            assert answer.status_code == 200 and answer.json()["seq"] == 5, answer.text
    else:
        for ping in pings:  # each on a socket of its own, as after reconnects
            ws, _ = await connect_phone(server, token)
            try:
                await ws.send(__import__("json").dumps(ping))
                await until_ack(ws, 5)
            finally:
                await ws.close()
    stored = await stored_pings(engine, user_id)
    assert [row["seq"] for row in stored] == [5], stored
    assert int(stored[0]["device_ts"].timestamp() * 1000) == times[0], "the first one sent is the one kept"


async def test_a_fix_dated_days_ahead_is_refused_and_one_hours_ahead_stored_as_suspect(server, engine):
    """A fix dated past the days the history has made ahead would sit in its default partition,
    which the day's making then locks for every flush: it is no history anyway."""
    user_id, token = create_user(server)
    now_ms = int(time.time() * 1000)
    pings = [{"seq": 1, "ts": now_ms + 3 * 86_400_000, "lat": 25.0339, "lon": 121.5645},
             {"seq": 2, "ts": now_ms + 3_600_000, "lat": 25.0339, "lon": 121.5645}]
    answer = httpx.post(f"{server.url}/v1/pings", json={"type": "pings", "pings": pings}, headers=bearer(token),
                        timeout=10).json()
    assert answer["seq"] == 2 and [(e["seq"], e["field"]) for e in answer["errors"]] == [(1, "ts")], answer
    stored = await stored_pings(engine, user_id)
    assert [(row["seq"], row["suspect"]) for row in stored] == [(2, ["future"])], stored
