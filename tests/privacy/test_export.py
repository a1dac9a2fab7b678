"""`GET /v1/me/export`: one zip of everything held about the user, streamed, without a secret."""

import io
import json
import os
import tempfile
import tracemalloc
import uuid
import zipfile
from xml.etree import ElementTree as ET

import httpx
import pytest
import sqlalchemy as sa

from server.core import refusals
from server.core.ratelimit import RateLimiter
from server.privacy import export, routes
from server.trips import routefile
from tests.privacy.account import CONTACT, FCM_TOKEN, FIXES, NAME, NOTE, PHONE, full_account
from tests.servers import bearer, create_user

GPX = "{http://www.topografix.com/GPX/1/1}"


def fetch(server, token: str) -> httpx.Response:
    return httpx.get(f"{server.url}/v1/me/export", headers=bearer(token), timeout=30)


async def test_the_export_holds_everything_about_the_user_and_no_secret(server, engine):
    account = await full_account(server, engine)
    response = fetch(server, account.token)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert "attachment" in response.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None
    assert set(archive.namelist()) == {"README.txt", "profile.json", "trips.json", "alerts.json", "history.geojson",
                                       "history.gpx"}

    profile = json.loads(archive.read("profile.json"))
    assert (profile["user_id"], profile["name"], profile["phone"]) == (account.user_id, NAME, PHONE)
    assert profile["pins"] == {"pin": "set", "duress_pin": "set"}
    assert profile["contacts"] == [CONTACT]
    [device] = profile["devices"]
    assert device["push_token"] == "set" and set(device) == {"device_id", "created_at", "push_token",
                                                             "push_token_updated_at"}
    assert profile["last_location"] is not None

    [trip] = json.loads(archive.read("trips.json"))
    assert trip["trip_id"] == account.trip_id and trip["kind"] == "hike"
    assert trip["planned_route"]["type"] == "LineString" and len(trip["planned_route"]["coordinates"]) == 4
    [link] = trip["shares"]
    assert set(link) == {"created_at", "expires_at", "revoked_at"}

    [alert] = json.loads(archive.read("alerts.json"))
    assert alert["alert_id"] == account.alert_id and alert["status"] == "resolved"
    assert alert["lat"] is not None and [note["text"] for note in alert["notes"]] == [NOTE]

    history = json.loads(archive.read("history.geojson"))
    assert history["type"] == "FeatureCollection" and len(history["features"]) == FIXES
    assert [feature["properties"]["seq"] for feature in history["features"]] == list(range(FIXES))
    gpx = ET.fromstring(archive.read("history.gpx"))
    assert gpx.tag == f"{GPX}gpx" and gpx.get("version") == "1.1"
    points = gpx.findall(f"./{GPX}trk/{GPX}trkseg/{GPX}trkpt")
    assert len(points) == FIXES and all(point.find(f"{GPX}time") is not None for point in points)
    assert routefile.read_route(archive.read("history.gpx")) == [
        (float(point.get("lat")), float(point.get("lon"))) for point in points]

    everything = b"".join(archive.read(name) for name in archive.namelist())
    for secret in (account.token, account.share_token, FCM_TOKEN, "$argon2"):
        assert secret.encode() not in everything
    assert b"token_sha256" not in everything and b"pin_hash" not in everything
    await account.phone.close()


async def test_the_export_needs_the_device_token(server):
    create_user(server)
    for headers in ({}, bearer("not-a-token"), {"Authorization": "Basic eDp5"}):
        response = httpx.get(f"{server.url}/v1/me/export", headers=headers, timeout=5)
        assert (response.status_code, response.json()["code"]) == (401, "unauthorized")


async def test_a_user_gets_a_few_exports_then_is_told_when_to_come_back(server):
    _, token = create_user(server)
    for _ in range(routes.EXPORTS_BURST):
        assert fetch(server, token).status_code == 200
    refused = fetch(server, token)
    assert (refused.status_code, refused.json()["code"]) == (429, "rate_limited")
    assert refused.json()["retry_after_ms"] > 0
    _, other = create_user(server, phone="+886912000111")
    assert fetch(server, other).status_code == 200, "one user's exports cost nobody else theirs"


def test_one_export_at_a_time_per_user_and_a_few_in_the_process():
    exports = routes.Exports(RateLimiter(rate_per_s=1.0, burst=100))
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    exports.admit(first)
    with pytest.raises(refusals.RateLimited):
        exports.admit(first)
    exports.admit(second)
    assert routes.EXPORTS_AT_ONCE == 2
    with pytest.raises(refusals.RateLimited):
        exports.admit(third)
    exports.running.discard(first)
    exports.admit(third)


async def _user_with_history(engine, fixes: int) -> uuid.UUID:
    user_id, device_id = uuid.uuid4(), uuid.uuid4()
    async with engine.begin() as connection:
        await connection.execute(sa.text("INSERT INTO users (user_id, name, phone) VALUES (:user, 'H', '0912345678')"),
                                 {"user": user_id})
        await connection.execute(sa.text(
            "INSERT INTO pings (device_id, user_id, seq, device_ts, received_at, location, accuracy_m, altitude_m) "
            "SELECT :device, :user, n, now() - n * interval '1 minute', now(), "
            "ST_SetSRID(ST_MakePoint(121.5 + n * 1e-6, 25.0), 4326), 5.0, 12.5 FROM generate_series(1, :count) n"),
            {"device": device_id, "user": user_id, "count": fixes})
    return user_id


async def _peak_bytes(engine, user_id: uuid.UUID, path: str) -> int:
    """The export's peak Python memory while it is written to `path` (not kept in memory here)."""
    tracemalloc.start()
    try:
        with open(path, "wb") as out:
            async for piece in export.archive(engine=engine, user_id=user_id, chunk_rows=500):
                out.write(piece)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def test_the_export_memory_does_not_grow_with_the_history(engine):
    small, large = await _user_with_history(engine, 1_000), await _user_with_history(engine, 20_000)
    with tempfile.TemporaryDirectory() as folder:
        small_path, large_path = os.path.join(folder, "small.zip"), os.path.join(folder, "large.zip")
        small_peak = await _peak_bytes(engine, small, small_path)
        large_peak = await _peak_bytes(engine, large, large_path)
        with zipfile.ZipFile(large_path) as archive:
            assert archive.testzip() is None
            with archive.open("history.geojson") as entry:
                features = json.load(entry)["features"]
            assert len(features) == 20_000
            assert archive.getinfo("history.gpx").file_size > 20_000 * 60
        assert os.path.getsize(large_path) > 5 * os.path.getsize(small_path)
    # Twenty times the fixes: the peak is that of one chunk, not of the history (which would be
    # tens of megabytes of Python objects).
    assert large_peak < 2 * small_peak + 1_000_000, (small_peak, large_peak)
