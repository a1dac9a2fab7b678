"""Share links over HTTP: only the trip's owner makes or revokes one, only for a trip still under
way, with an expiry inside the bounds; tokens are unguessable and only their digest is stored."""

import hashlib
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.servers import bearer, connect_phone, create_user
from tests.sharing.watching import share, shared, start_trip, taxi, hike

DEFAULT_AFTER_END_S = 3600
MAX_S = 24 * 3600


def expires(link: dict) -> datetime:
    return datetime.fromisoformat(link["expires_at"])


async def test_a_link_lasts_until_the_expected_end_plus_an_hour_and_only_its_digest_is_stored(server, engine):
    _, token = create_user(server)
    phone, _ = await connect_phone(server, token)
    trip_id = await start_trip(phone)
    link = shared(server, token, trip_id)
    assert len(link["token"]) >= 43  # 256 bits in base64url
    async with engine.connect() as connection:
        row = (await connection.execute(sa.text("SELECT token_sha256, expires_at FROM shares"))).one()
        due_at = await connection.scalar(sa.text("SELECT due_at FROM trips"))
    assert bytes(row.token_sha256) == hashlib.sha256(link["token"].encode()).digest()
    assert link["token"].encode() not in bytes(row.token_sha256)
    assert expires(link) == row.expires_at == due_at + timedelta(seconds=DEFAULT_AFTER_END_S)
    await phone.close()


async def test_a_link_never_outlasts_a_day_and_a_trip_without_times_gets_an_hour(server):
    _, token = create_user(server)
    phone, _ = await connect_phone(server, token)
    # A hike back in six days: its link still ends a day from now.
    far = taxi(kind="hike", plate=None, expected_return=int((datetime.now(UTC) + timedelta(days=6)).timestamp() * 1000))
    link = shared(server, token, await start_trip(phone, far))
    assert abs((expires(link) - datetime.now(UTC)).total_seconds() - MAX_S) < 30
    _, other_token = create_user(server, name="Bo Hsu", phone="+886900000002")
    other, _ = await connect_phone(server, other_token)
    untimed = shared(server, other_token, await start_trip(other, taxi(eta=None)))
    assert abs((expires(untimed) - datetime.now(UTC)).total_seconds() - DEFAULT_AFTER_END_S) < 30
    chosen = shared(server, other_token, (await other_trip(server, other_token)), expires_in_s=600)
    assert abs((expires(chosen) - datetime.now(UTC)).total_seconds() - 600) < 30
    for ws in (phone, other):
        await ws.close()


async def other_trip(server, token: str) -> str:
    trips = httpx.get(f"{server.url}/v1/trips", headers=bearer(token), timeout=5).json()["trips"]
    return trips[0]["trip_id"]


@pytest.mark.parametrize("expires_in_s", [0, -1, MAX_S + 1, 10**30, 60.5, "600", True, None, [600]])
async def test_an_expiry_out_of_bounds_or_not_a_whole_number_of_seconds_is_refused(server, expires_in_s):
    _, token = create_user(server)
    phone, _ = await connect_phone(server, token)
    trip_id = await start_trip(phone)
    response = httpx.post(f"{server.url}/v1/trips/{trip_id}/shares", json={"expires_in_s": expires_in_s},
                          headers=bearer(token), timeout=5)
    if expires_in_s is None:
        assert response.status_code == 201  # no choice: the default
    else:
        assert response.status_code == 422, response.text
        assert response.json()["field"].endswith("expires_in_s")
    await phone.close()


async def test_someone_elses_trip_is_not_found_like_a_missing_one_and_their_links_cannot_be_revoked(server):
    _, token = create_user(server)
    _, stranger = create_user(server, name="Eve", phone="+886900000003")
    phone, _ = await connect_phone(server, token)
    trip_id = await start_trip(phone)
    theirs = share(server, stranger, trip_id)
    missing = share(server, stranger, "9d1c0d4e-0000-4000-8000-000000000000")
    assert (theirs.status_code, missing.status_code) == (404, 404)
    assert theirs.json()["code"] == missing.json()["code"] == "not_found"
    not_an_id = share(server, stranger, "not-a-uuid")
    assert not_an_id.status_code == 422 and not_an_id.json()["field"] == "path.trip_id"
    assert httpx.post(f"{server.url}/v1/trips/{trip_id}/shares", timeout=5).status_code == 401
    link = shared(server, token, trip_id)
    assert httpx.delete(f"{server.url}/v1/shares/{link['token']}", headers=bearer(stranger), timeout=5).status_code == 404
    assert httpx.delete(f"{server.url}/v1/shares/{link['token']}", timeout=5).status_code == 401
    assert httpx.get(f"{server.url}/share/{link['token']}", timeout=5).status_code == 200, "the link still works"
    assert httpx.delete(f"{server.url}/v1/shares/{'B' * 43}", headers=bearer(token), timeout=5).status_code == 404
    await phone.close()


async def test_a_trip_that_is_over_cannot_be_shared(server):
    _, token = create_user(server)
    phone, _ = await connect_phone(server, token)
    trip_id = await start_trip(phone)
    assert httpx.post(f"{server.url}/v1/trips/{trip_id}/end", headers=bearer(token), timeout=5).status_code == 200
    response = share(server, token, trip_id)
    assert response.status_code == 409 and response.json()["code"] == "conflict"
    await phone.close()


async def test_share_links_are_rate_limited_per_device(server):
    _, token = create_user(server)
    phone, _ = await connect_phone(server, token)
    trip_id = await start_trip(phone, hike())
    answers = [share(server, token, trip_id).status_code for _ in range(12)]
    assert answers[:10] == [201] * 10 and answers[10:] == [429, 429]
    limited = share(server, token, trip_id)
    assert int(limited.headers["Retry-After"]) > 0
    await phone.close()


async def test_the_page_is_404_for_an_unknown_link_and_carries_a_strict_policy(server):
    _, token = create_user(server)
    phone, _ = await connect_phone(server, token)
    link = shared(server, token, await start_trip(phone))
    unknown = httpx.get(f"{server.url}/share/{'C' * 43}", timeout=5)
    assert unknown.status_code == 404 and "No such link" in unknown.text
    page = httpx.get(link["url"], timeout=5)
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "default-src 'none'" in policy
    assert page.headers["referrer-policy"] == "no-referrer" and page.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text and " on" not in page.text.split("<body", 1)[1].split("<script", 1)[0]
    assert httpx.get(f"{server.url}/share/assets/share.js", timeout=5).status_code == 200
    assert httpx.get(f"{server.url}/share/assets/..%2Fservices.py", timeout=5).status_code == 404
    await phone.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(guess=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1,
                     max_size=120))
def test_a_guessed_token_opens_nothing(server, guess):
    assert httpx.get(f"{server.url}/share/{guess}", timeout=5).status_code == 404
