"""Faults: a killed server, a wiped Redis, a lost database. Nothing acknowledged is lost."""

import asyncio
import json
import subprocess
import sys
import time

import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import TEST_ENV
from tests.proxy import CuttableProxy, port_of, through
from tests.servers import ServerProcess, connect_phone, create_user, last_location_row, stored_pings, until_ack

TAIPEI_101 = (25.0339, 121.5645)
STREAM_PINGS = 3000


def walk(first_seq: int, count: int, start_ms: int) -> list[dict]:
    return [
        {"type": "ping", "seq": first_seq + i, "ts": start_ms + i * 100, "lat": TAIPEI_101[0] + i * 1e-6,
         "lon": TAIPEI_101[1], "acc": 5.0}
        for i in range(count)
    ]


async def stream_until_closed(ws, pings: list[dict], acks: list[int], *, deadline_s: float) -> None:
    """Send pings as fast as the socket takes them while collecting acks, until it closes."""

    async def collect():
        async for message in ws:
            frame = json.loads(message)
            if frame["type"] == "ack":
                acks.append(frame["seq"])

    collector = asyncio.create_task(collect())
    try:
        async with asyncio.timeout(deadline_s):
            for fields in pings:
                await ws.send(json.dumps(fields))
                await asyncio.sleep(0.001)  # a few seconds of stream: the fault lands inside it
            await collector
    except (ConnectionClosed, TimeoutError):
        pass
    finally:
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)


async def stream_into_fault(server: ServerProcess, token: str, pings: list[dict], fault) -> tuple[object, list[int]]:
    """Stream pings; once acks flow (plus half a second), inject `fault()`. Returns the socket and its acks."""
    ws, _ = await connect_phone(server, token)
    acks: list[int] = []

    async def inject_once_acks_flow():
        while not acks:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)
        fault()

    injector = asyncio.create_task(inject_once_acks_flow())
    await stream_until_closed(ws, pings, acks, deadline_s=30)
    async with asyncio.timeout(5):
        await injector
    assert acks, "the stream was acknowledged before the fault"
    assert max(acks) < pings[-1]["seq"], "the fault landed mid-stream"
    return ws, acks


async def resend_from_welcome(server: ServerProcess, token: str, pings: list[dict]) -> int:
    """Reconnect as a phone would: drop what the welcome says is stored, resend the rest."""
    ws, welcome = await connect_phone(server, token)
    rest = [fields for fields in pings if fields["seq"] > welcome["acked_seq"]]
    for fields in rest:
        await ws.send(json.dumps(fields))
    if rest:
        await until_ack(ws, rest[-1]["seq"], timeout_s=20)
    await ws.close()
    return welcome["acked_seq"]


async def test_sigkill_mid_stream_loses_no_acknowledged_ping(fresh_server, engine):
    server = fresh_server(GUARDIAN_RATE_PINGS_PER_S="100000", GUARDIAN_RATE_BURST_PINGS="100000")
    user_id, token = create_user(server)
    pings = walk(0, STREAM_PINGS, int(time.time() * 1000) - STREAM_PINGS * 100)
    _, acks = await stream_into_fault(server, token, pings, server.kill)
    highest_ack = max(acks)

    stored = [row["seq"] for row in await stored_pings(engine, user_id)]
    assert set(range(highest_ack + 1)) <= set(stored), "every acknowledged ping survived"
    assert stored == list(range(len(stored))), "what is stored is a prefix of the stream, each once"

    server.start()
    resumed_from = await resend_from_welcome(server, token, pings)
    assert resumed_from >= highest_ack
    assert [row["seq"] for row in await stored_pings(engine, user_id)] == list(range(STREAM_PINGS))


async def test_lost_database_closes_the_stream_without_false_acks_and_the_resend_completes(fresh_server, engine):
    with CuttableProxy(target_port=port_of(TEST_ENV["GUARDIAN_DATABASE_URL"])) as proxy:
        server = fresh_server(
            GUARDIAN_DATABASE_URL=through(proxy, TEST_ENV["GUARDIAN_DATABASE_URL"]),
            GUARDIAN_RATE_PINGS_PER_S="100000",
            GUARDIAN_RATE_BURST_PINGS="100000",
        )
        user_id, token = create_user(server)
        pings = walk(0, STREAM_PINGS, int(time.time() * 1000) - STREAM_PINGS * 100)
        ws, acks = await stream_into_fault(server, token, pings, proxy.cut)
        assert ws.close_code == 1011, "the phone is told storage failed, so it resends"
        stored = {row["seq"] for row in await stored_pings(engine, user_id)}
        assert set(range(max(acks) + 1)) <= stored, "no ack for a ping that is not stored"

        with pytest.raises(ConnectionClosed) as refused:
            ws, _ = await connect_phone(server, token)
            await ws.recv()
        assert refused.value.rcvd.code == 1011, "no welcome without the database"

        proxy.restore()
        await resend_from_welcome(server, token, pings)
    assert [row["seq"] for row in await stored_pings(engine, user_id)] == list(range(STREAM_PINGS))


async def send_fix(server: ServerProcess, token: str, lat: float) -> None:
    ws, _ = await connect_phone(server, token)
    await ws.send(json.dumps({"type": "ping", "seq": 0, "ts": int(time.time() * 1000), "lat": lat,
                              "lon": TAIPEI_101[1]}))
    await until_ack(ws, 0)
    await ws.close()


async def hot_lat(redis, user_id: str) -> float | None:
    for _ in range(50):
        found = await redis.hget(f"guardian:loc:{user_id}", "lat")
        if found is not None:
            return float(found)
        await asyncio.sleep(0.02)
    return None


async def test_flushed_redis_is_rebuilt_by_the_cli_and_at_start_up(fresh_server, redis, engine, test_env):
    server = fresh_server()
    users = [create_user(server, name=f"User {i}") for i in range(3)]
    for i, (user_id, token) in enumerate(users):
        await send_fix(server, token, 25.03 + i / 100)
    assert await hot_lat(redis, users[2][0]) == pytest.approx(25.05)

    await redis.flushdb()
    subprocess.run([sys.executable, "-m", "server", "rebuild-hot-state"], env=test_env, check=True)
    for i, (user_id, _) in enumerate(users):
        assert await hot_lat(redis, user_id) == pytest.approx(25.03 + i / 100)
        assert (await redis.geopos("guardian:geo:last", user_id))[0] is not None

    await redis.flushdb()
    server.stop()
    server.start()
    for i, (user_id, _) in enumerate(users):
        assert await hot_lat(redis, user_id) == pytest.approx(25.03 + i / 100)
    assert (await last_location_row(engine, users[0][0]))["lat"] == pytest.approx(25.03)


async def test_a_stopped_redis_delays_only_the_hot_copy(fresh_server, engine, redis):
    """Acks depend on PostgreSQL alone: with Redis unreachable, pings are still stored and acked."""
    server = fresh_server()
    user_id, token = create_user(server)
    server.stop()
    server.env["GUARDIAN_REDIS_URL"] = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    with pytest.raises(RuntimeError):
        server.start()  # a missing service at start-up fails loudly
    server.env["GUARDIAN_REDIS_URL"] = TEST_ENV["GUARDIAN_REDIS_URL"]
    server.start()
    await redis.flushdb()  # the wipe happens while serving: hot copies go missing, storage does not
    await send_fix(server, token, 25.04)
    assert (await last_location_row(engine, user_id))["lat"] == pytest.approx(25.04)
