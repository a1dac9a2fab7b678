"""server.phones.ingest: a flush that fails harms no one else, and loses nothing it acknowledged.

A row that validation accepts but PostgreSQL refuses is made here with a CHECK
constraint the test adds to its own database (what a field of a type or range the
validation missed would do); a failing flush is a flush stalled behind a lock whose
backend is then terminated (tests/stall.py).
"""

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from geo.fix import Fix
from server.positions import history
from server.phones.ingest import Ingest, Item
from server.phones.ledger import Ledger
from tests.conftest import TEST_ENV
from tests.servers import bearer, connect_phone, create_user, receive, stored_pings, until_ack
from tests.stall import Stall

TAIPEI_101 = (25.0339, 121.5645)
POISON_BATTERY_PCT = 13.0


def walk(first_seq: int, count: int, *, poison_seq: int | None = None) -> list[dict]:
    start_ms = int(time.time() * 1000) - 60_000
    return [
        {"seq": seq, "ts": start_ms + seq * 1000, "lat": TAIPEI_101[0] + seq * 1e-5, "lon": TAIPEI_101[1],
         "acc": 5.0, "battery": POISON_BATTERY_PCT if seq == poison_seq else 80.0}
        for seq in range(first_seq, first_seq + count)
    ]


@pytest.fixture
async def poison(engine):
    """PostgreSQL refuses a ping with a battery of 13 %, which validation lets through."""
    async with engine.begin() as connection:
        await connection.execute(sa.text(
            f"ALTER TABLE pings ADD CONSTRAINT test_poison CHECK (battery_pct IS DISTINCT FROM {POISON_BATTERY_PCT})"
            " NOT VALID"))
    yield
    async with engine.begin() as connection:
        await connection.execute(sa.text("ALTER TABLE pings DROP CONSTRAINT test_poison"))


async def test_a_row_postgresql_refuses_is_refused_alone_and_the_rest_of_its_flush_commits(fresh_server, engine,
                                                                                            poison):
    server = fresh_server(GUARDIAN_FLUSH_INTERVAL_MS="300")  # both phones' batches share one flush
    (bad_user, bad_token), (good_user, good_token) = create_user(server, name="A"), create_user(server, name="B")
    bad, _ = await connect_phone(server, bad_token)
    good, _ = await connect_phone(server, good_token)
    await bad.send(json.dumps({"type": "batch", "pings": walk(0, 3, poison_seq=1)}))
    await good.send(json.dumps({"type": "batch", "pings": walk(0, 3)}))

    frames = await until_ack(bad, 2)
    [error] = [frame for frame in frames if frame["type"] == "error"]
    assert (error["code"], error["seq"]) == ("invalid_field", 1)
    assert frames.index(error) < min(i for i, f in enumerate(frames) if f["type"] == "ack" and f["seq"] >= 1), \
        "the refusal comes before the ack that passes over it"
    assert all(frame["type"] != "error" for frame in await until_ack(good, 2))
    await bad.send(json.dumps({"type": "ping", **walk(3, 1)[0]}))
    await until_ack(bad, 3)  # the phone with the bad row is not closed either
    assert [row["seq"] for row in await stored_pings(engine, bad_user)] == [0, 2, 3]
    assert [row["seq"] for row in await stored_pings(engine, good_user)] == [0, 1, 2]
    await bad.close()
    await good.close()


async def test_a_seq_past_bigint_is_refused_alone_and_the_other_phone_keeps_streaming(fresh_server, engine):
    """Refused at validation or at flush time, either way only its own ping is refused."""
    server = fresh_server(GUARDIAN_FLUSH_INTERVAL_MS="300")
    (_, bad_token), (good_user, good_token) = create_user(server, name="A"), create_user(server, name="B")
    bad, _ = await connect_phone(server, bad_token)
    good, _ = await connect_phone(server, good_token)
    await bad.send(json.dumps({"type": "ping", **walk(0, 1)[0], "seq": 2**63}))
    await good.send(json.dumps({"type": "batch", "pings": walk(0, 3)}))
    error = await receive(bad, timeout_s=10)
    # Validation refuses it (a seq storage cannot hold is not named back, so no ack ever passes it).
    assert (error["type"], error["code"], error.get("field"), error.get("seq")) == ("error", "invalid_field", "seq", None)
    await until_ack(good, 2)
    assert [row["seq"] for row in await stored_pings(engine, good_user)] == [0, 1, 2]
    await bad.close()
    await good.close()


async def test_an_http_batch_with_a_row_postgresql_refuses_is_answered_with_its_error(server, engine, poison):
    user_id, token = create_user(server)
    response = httpx.post(f"{server.url}/v1/pings", json=walk(0, 4, poison_seq=2), headers=bearer(token), timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["seq"] == 3
    assert [(error["code"], error["seq"]) for error in body["errors"]] == [("invalid_field", 2)]
    assert [row["seq"] for row in await stored_pings(engine, user_id)] == [0, 1, 3]


async def closed_code(ws) -> int:
    """Read until the server closes the socket; its close code."""
    with pytest.raises(ConnectionClosed) as closed:
        for _ in range(1000):
            await receive(ws, timeout_s=15)
    return closed.value.rcvd.code


async def fail_flushes_until_closed(stall: Stall, ws) -> int:
    """Terminate the flush waiting for the lock, and again its retry, until the phone's socket is
    closed; then no more, so a later flush (if any) is free to commit once the lock goes."""
    closing = asyncio.create_task(closed_code(ws))
    for _ in range(5):
        await stall.fail_flush()
        done, _ = await asyncio.wait({closing}, timeout=1.0)
        if done:
            break
    async with asyncio.timeout(15):
        return await closing


async def test_a_flush_failed_twice_takes_its_ledgers_queued_pings_with_it(fresh_server, engine):
    """Pings queued behind a failed flush must not commit after it: the welcome's acked_seq
    would jump over the hole and the phone would drop the missing pings for good."""
    server = fresh_server()
    user_id, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    async with Stall(TEST_ENV["GUARDIAN_DATABASE_URL"]) as stall:
        await ws.send(json.dumps({"type": "batch", "pings": walk(0, 5)}))
        await stall.waiting_flush()
        await ws.send(json.dumps({"type": "batch", "pings": walk(5, 5)}))  # queued behind the stalled flush
        await asyncio.sleep(0.3)
        assert await fail_flushes_until_closed(stall, ws) == 1011
        assert stall.terminated >= 1
    await asyncio.sleep(0.5)  # any flush still to come has come
    stored = [row["seq"] for row in await stored_pings(engine, user_id)]
    assert stored == list(range(len(stored))), "what is stored is a prefix of what the phone sent"
    ws, welcome = await connect_phone(server, token)
    assert set(range(welcome["acked_seq"] + 1)) <= set(stored)
    await ws.close()


async def test_a_flush_whose_backend_is_terminated_is_retried_and_the_stream_goes_on(fresh_server, engine):
    server = fresh_server()
    user_id, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    async with Stall(TEST_ENV["GUARDIAN_DATABASE_URL"]) as stall:
        await ws.send(json.dumps({"type": "batch", "pings": walk(0, 5)}))
        await stall.fail_flush()
        await stall.waiting_flush()  # the retry, on a fresh connection
    await until_ack(ws, 4, timeout_s=10)
    await ws.send(json.dumps({"type": "ping", **walk(5, 1)[0]}))
    await until_ack(ws, 5)
    assert [row["seq"] for row in await stored_pings(engine, user_id)] == list(range(6))
    await ws.close()


async def test_the_http_ack_covers_the_sockets_older_pings_only_once_they_are_stored(fresh_server, engine):
    """The socket's pings 0-4 are lost in a failed flush; pings 5-6 posted meanwhile must not be
    answered `seq: 6`, which would tell the phone 0-4 are stored."""
    server = fresh_server()
    user_id, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    async with Stall(TEST_ENV["GUARDIAN_DATABASE_URL"]) as stall, \
            httpx.AsyncClient(base_url=server.url, headers=bearer(token), timeout=30) as client:
        await ws.send(json.dumps({"type": "batch", "pings": walk(0, 5)}))
        await stall.waiting_flush()
        posted = asyncio.create_task(client.post("/v1/pings", json=walk(5, 2)))
        await asyncio.sleep(1.0)  # queued behind the stalled flush (reads do not wait for the lock)
        assert await fail_flushes_until_closed(stall, ws) == 1011
    response = await posted
    stored = {row["seq"] for row in await stored_pings(engine, user_id)}
    if response.status_code == 200:
        assert set(range(response.json()["seq"] + 1)) <= stored, (response.json(), stored)
    else:
        assert (response.status_code, response.json()["code"]) == (503, "unavailable")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad=st.lists(st.booleans(), min_size=1, max_size=60))
async def test_a_flush_stores_every_good_row_in_order_and_refuses_each_bad_one(engine, redis, poison, bad):
    """The ingest itself, in this process, on the real database: bad rows anywhere in a flush."""
    ingest = Ingest(engine=engine, redis=redis, flush_max_rows=1000, flush_interval_ms=20, queue_rows=10_000)
    device_id, user_id, now = uuid.uuid4(), uuid.uuid4(), datetime.now(UTC)
    async with engine.begin() as connection:
        await connection.execute(sa.text("INSERT INTO users (user_id, name, phone) VALUES (:user, 'P', '0912345678')"),
                                 {"user": user_id})
        await connection.execute(sa.text("INSERT INTO devices (device_id, user_id, token_sha256) "
                                         "VALUES (:device, :user, :digest)"),
                                 {"device": device_id, "user": user_id, "digest": device_id.bytes * 2})
    ledger, refused = Ledger(-1), []
    items = [
        Item(history.NewFix(device_id=device_id, user_id=user_id, seq=seq, received_at=now, suspect=None,
                            fix=Fix(lat=TAIPEI_101[0] + seq * 1e-5, lon=TAIPEI_101[1], ts=now, accuracy_m=5.0,
                                    battery_pct=POISON_BATTERY_PCT if poisoned else 80.0)),
             ledger, ledger.expect(seq), refused.append)
        for seq, poisoned in enumerate(bad)
    ]
    ingest.start()
    try:
        ingest.admit(items)
        async with asyncio.timeout(10):
            while ledger.pending:
                await asyncio.sleep(0.01)
    finally:
        await ingest.close()
    async with engine.connect() as connection:
        stored = (await connection.scalars(
            sa.text("SELECT seq FROM pings WHERE device_id = :device ORDER BY seq"), {"device": device_id})).all()
    assert stored == [seq for seq, poisoned in enumerate(bad) if not poisoned]
    assert [(refusal.code, refusal.seq) for refusal in refused] == \
        [("invalid_field", seq) for seq, poisoned in enumerate(bad) if poisoned]
    assert ledger.acked_seq == len(bad) - 1 and not ledger.failed
