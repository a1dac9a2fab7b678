"""`DELETE /v1/me`: export, erase, then nothing about the user is left anywhere but the alert
record: not in any table, not in Redis, not behind any endpoint, socket or watcher link."""

import asyncio
import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import sqlalchemy as sa
import websockets
from redis.asyncio import Redis

from server.alerts import record
from tests.conftest import TEST_ENV
from tests.privacy.account import CONTACT, FCM_TOKEN, NAME, NOTE, PHONE, full_account
from tests.servers import bearer, connect_console, connect_phone, create_user, sos_frame, until_type

RECORD = {"alerts", "audit_reads", "users"}  # users: the tombstone the record names


def erase(server, token: str) -> httpx.Response:
    return httpx.delete(f"{server.url}/v1/me", headers=bearer(token), timeout=30)


async def rows_about(engine, user_id: str) -> dict[str, int]:
    """Rows naming the user in every table PostgreSQL has with a user_id column (whatever the
    schema module says: a table added later, a partition, is counted too)."""
    async with engine.connect() as connection:
        tables = (await connection.scalars(sa.text(
            "SELECT table_name FROM information_schema.columns WHERE column_name = 'user_id' "
            "AND table_schema = 'public'"))).all()
        found = {}
        for table in tables:
            count = await connection.scalar(sa.text(f'SELECT count(*) FROM "{table}" WHERE user_id = :user'),
                                            {"user": user_id})
            if count:
                found[table] = count
        return found


async def redis_mentions(user_id: str) -> list[str]:
    """Every Redis key (of this index) whose name, members or values hold the user's id."""
    client = Redis.from_url(TEST_ENV["GUARDIAN_REDIS_URL"])
    try:
        found = []
        async for key in client.scan_iter(count=500):
            name = key.decode()
            kind = (await client.type(key)).decode()
            if user_id in name:
                found.append(name)
            elif kind == "zset" and await client.zscore(key, user_id) is not None:
                found.append(f"{name} (member)")
            elif kind == "hash" and any(user_id.encode() in value for value in (await client.hgetall(key)).values()):
                found.append(f"{name} (value)")
        return found
    finally:
        await client.aclose()


def bearer_operations(server) -> list[tuple[str, str]]:
    """Every operation of the API a device token opens (those that may answer 401), with a
    made-up id or token for its path's parameters."""
    document = httpx.get(f"{server.url}/openapi.json", timeout=5).json()
    found = []
    for path, item in document["paths"].items():
        if path.startswith(("/v1/console", "/v1/officer")):
            continue
        for method, operation in item.items():
            if "401" in operation.get("responses", {}):
                filled = re.sub(r"\{token\}", "A" * 43, re.sub(r"\{\w+_id\}", str(uuid.uuid4()), path))
                found.append((method.upper(), filled))
    return found


async def closed_with(ws, timeout_s: float = 5.0) -> int:
    async with asyncio.timeout(timeout_s):
        try:
            while True:
                await ws.recv()
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else -1


async def test_export_then_erase_then_nothing_of_the_user_is_left_but_the_alert_record(server, engine):
    account = await full_account(server, engine)
    watcher = await websockets.connect(f"{server.ws_url}/v1/share/{account.share_token}")
    try:
        assert json.loads(await watcher.recv())["type"] == "trip"
        exported = httpx.get(f"{server.url}/v1/me/export", headers=bearer(account.token), timeout=30)
        assert exported.status_code == 200
        before = await rows_about(engine, account.user_id)
        assert {"pings", "last_locations", "devices", "trips", "contacts", "pins"} <= set(before)

        response = erase(server, account.token)
        assert response.status_code == 204, response.text
        assert await closed_with(account.phone) == 1008
        assert await closed_with(watcher) == 1008
    finally:
        await watcher.close()
        await account.phone.close()

    assert set(await rows_about(engine, account.user_id)) <= RECORD | {"trips"}
    async with engine.connect() as connection:
        kept_trips = set(await connection.scalars(sa.text("SELECT trip_id FROM trips WHERE user_id = :u"),
                                                  {"u": account.user_id}))
        alert_trips = set(await connection.scalars(sa.text(
            "SELECT trip_id FROM alerts WHERE user_id = :u AND trip_id IS NOT NULL"), {"u": account.user_id}))
        assert kept_trips == alert_trips, "only the trip an alert was raised on stays, with that alert's record"
        for table, column, value in (("shares", "trip_id", account.trip_id), ("trip_events", "trip_id", account.trip_id)):
            assert await connection.scalar(sa.text(f"SELECT count(*) FROM {table} WHERE {column} = :v"),
                                           {"v": value}) == 0
        assert await connection.scalar(sa.text("SELECT count(*) FROM push_tokens WHERE fcm_token = :t"),
                                       {"t": FCM_TOKEN}) == 0
        assert await connection.scalar(sa.text("SELECT count(*) FROM contacts WHERE phone = :p"),
                                       {"p": CONTACT["phone"]}) == 0
        record = (await connection.execute(sa.text(
            "SELECT a.status, ST_Y(a.location) AS lat, u.name, u.phone, u.erased_at, "
            "(SELECT array_agg(text) FROM alert_notes n WHERE n.alert_id = a.alert_id) AS notes "
            "FROM alerts a JOIN users u USING (user_id) WHERE a.alert_id = :a"), {"a": account.alert_id})).one()
    assert record.status == "resolved" and record.lat is not None and record.notes == [NOTE]
    assert (record.name, record.phone) == (NAME, PHONE) and record.erased_at is not None, "the record keeps its subject"
    await asyncio.sleep(2.0)  # past the erasure's second drop of the hot copy
    assert await redis_mentions(account.user_id) == []

    operations = bearer_operations(server)
    assert ("GET", "/v1/me/export") in operations and ("DELETE", "/v1/me") in operations
    for method, path in operations:
        answer = httpx.request(method, f"{server.url}{path}", headers=bearer(account.token), json={}, timeout=5)
        assert answer.status_code == 401, (method, path, answer.status_code)
    async with websockets.connect(f"{server.ws_url}/v1/phone", additional_headers=bearer(account.token)) as phone:
        assert await closed_with(phone) == 1008
    async with websockets.connect(f"{server.ws_url}/v1/share/{account.share_token}") as watcher:
        assert await closed_with(watcher) == 1008
    assert httpx.get(f"{server.url}/share/{account.share_token}", timeout=5).status_code in (404, 410)
    console, snapshot = await connect_console(server, account.dispatcher)
    await console.close()
    assert account.user_id not in json.dumps(snapshot)


async def test_erasure_is_refused_while_an_alert_is_not_over(server, engine):
    user_id, token = create_user(server)
    phone, _ = await connect_phone(server, token)
    try:
        await phone.send(json.dumps(sos_frame()))
        await until_type(phone, "sos_ack")
        response = erase(server, token)
        assert (response.status_code, response.json()["code"]) == (409, "conflict")
        assert httpx.get(f"{server.url}/v1/me/location", headers=bearer(token), timeout=5).status_code in (200, 404)
        assert "devices" in await rows_about(engine, user_id), "nothing was erased"
    finally:
        await phone.close()


async def test_erasing_twice_or_with_a_bad_token_is_refused_and_erases_nobody_else(server, engine):
    user_id, token = create_user(server)
    other_id, other_token = create_user(server, phone="+886933000111")
    for headers in ({}, bearer("A" * 43), bearer(token + "x")):
        response = httpx.delete(f"{server.url}/v1/me", headers=headers, timeout=5)
        assert (response.status_code, response.json()["code"]) == (401, "unauthorized")
    assert erase(server, token).status_code == 204
    again = erase(server, token)
    assert (again.status_code, again.json()["code"]) == (401, "unauthorized")
    assert await rows_about(engine, user_id) == {"users": 1}
    assert set(await rows_about(engine, other_id)) == {"users", "devices"}
    assert httpx.get(f"{server.url}/v1/me/location", headers=bearer(other_token), timeout=5).status_code == 404
    async with engine.connect() as connection:
        tombstone = (await connection.execute(sa.text("SELECT name, phone, erased_at FROM users WHERE user_id = :u"),
                                              {"u": user_id})).one()
    assert (tombstone.name, tombstone.phone) == ("", "") and tombstone.erased_at is not None, \
        "without an alert the tombstone holds no name nor phone"


async def test_concurrent_erasures_of_one_account_both_succeed_once(server, engine):
    user_id, token = create_user(server)
    async with httpx.AsyncClient(timeout=30) as client:
        answers = await asyncio.gather(*(client.delete(f"{server.url}/v1/me", headers=bearer(token))
                                         for _ in range(4)))
    assert {answer.status_code for answer in answers} <= {204, 401} and 204 in {a.status_code for a in answers}
    assert await rows_about(engine, user_id) == {"users": 1}


async def test_pings_streaming_through_the_erasure_leave_no_fix_behind(server, engine):
    user_id, token = create_user(server)
    phone, _ = await connect_phone(server, token)
    try:
        sent = 0

        async def stream() -> None:
            nonlocal sent
            base_ms = int(time.time() * 1000)
            for seq in range(400):  # bounded: at most 400 pings, about 4 s
                await phone.send(json.dumps({"type": "ping", "seq": seq, "ts": base_ms + 1000 * seq,
                                             "lat": 25.03 + seq * 1e-5, "lon": 121.56, "acc": 5.0}))
                sent = seq
                await asyncio.sleep(0.01)

        streaming = asyncio.create_task(stream())
        await asyncio.sleep(0.5)
        response = await asyncio.to_thread(erase, server, token)
        assert response.status_code == 204
        try:
            await asyncio.wait_for(streaming, timeout=10)
        except websockets.ConnectionClosed:
            pass
        assert sent > 0
        assert await closed_with(phone) == 1008
    finally:
        await phone.close()
    await asyncio.sleep(2.0)
    assert await rows_about(engine, user_id) == {"users": 1}
    assert await redis_mentions(user_id) == []


async def test_an_erased_users_record_ends_with_their_last_alert_trip_and_tombstone_included(server, engine):
    account = await full_account(server, engine)
    await account.phone.close()
    assert erase(server, account.token).status_code == 204
    async with engine.begin() as connection:
        assert await connection.scalar(sa.text("SELECT count(*) FROM trips WHERE trip_id = :t"),
                                       {"t": account.trip_id}) == 1, "the alert's trip is part of its record"
        removed = await record.remove_ended(connection=connection, ended_before=datetime.now(UTC) + timedelta(days=1))
    assert removed == 1
    async with engine.connect() as connection:
        for table in ("alerts", "trips", "users", "alert_fixes"):
            column = "alert_id" if table == "alert_fixes" else "user_id"
            value = account.alert_id if table == "alert_fixes" else account.user_id
            assert await connection.scalar(sa.text(f"SELECT count(*) FROM {table} WHERE {column} = :v"),
                                           {"v": value}) == 0, table
