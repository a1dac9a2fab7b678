"""The phone socket `/v1/phone`, end to end: a real server, a real websocket client, real storage."""

import asyncio
import json
import time

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.servers import (
    bearer,
    connect_phone,
    create_user,
    last_location_row,
    receive,
    stored_pings,
    until_ack,
)

TAIPEI_101 = (25.0339, 121.5645)


def now_ms() -> int:
    return int(time.time() * 1000)


def ping(seq: int, *, ts: int | None = None, lat: float = TAIPEI_101[0], lon: float = TAIPEI_101[1], **extra) -> dict:
    return {"type": "ping", "seq": seq, "ts": now_ms() if ts is None else ts, "lat": lat, "lon": lon, **extra}


def walk(first_seq: int, count: int, start_ms: int) -> list[dict]:
    """A plausible walk north from Taipei 101: ~11 m and one second per fix."""
    return [
        {"seq": first_seq + i, "ts": start_ms + i * 1000, "lat": TAIPEI_101[0] + i * 1e-4, "lon": TAIPEI_101[1],
         "acc": 5.0}
        for i in range(count)
    ]


async def test_welcome_reports_the_highest_stored_seq(server, engine):
    user_id, token = create_user(server)
    ws, welcome = await connect_phone(server, token)
    assert welcome == {"type": "welcome", "user_id": user_id, "acked_seq": -1}
    await ws.send(json.dumps({"type": "batch", "pings": walk(0, 5, now_ms() - 10_000)}))
    await until_ack(ws, 4)
    await ws.close()
    ws, welcome = await connect_phone(server, token)
    assert welcome["acked_seq"] == 4
    await ws.close()


async def test_an_ack_is_sent_only_for_committed_pings(server, engine):
    user_id, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    fixes = walk(0, 200, now_ms() - 200_000)
    acks_seen = 0
    for block in range(0, 200, 50):
        for fields in fixes[block : block + 50]:
            await ws.send(json.dumps({"type": "ping", **fields}))
        for frame in await until_ack(ws, block + 49):
            # Whatever has been acked must already be readable from PostgreSQL.
            seqs = {row["seq"] for row in await stored_pings(engine, user_id)}
            assert set(range(frame["seq"] + 1)) <= seqs
            acks_seen += 1
    assert acks_seen >= 4
    assert [row["seq"] for row in await stored_pings(engine, user_id)] == list(range(200))
    await ws.close()


async def test_hello_frame_authenticates_a_client_without_headers(server):
    user_id, token = create_user(server)
    async with websockets.connect(f"{server.ws_url}/v1/phone") as ws:
        await ws.send(json.dumps({"type": "hello", "token": token}))
        assert (await receive(ws)) == {"type": "welcome", "user_id": user_id, "acked_seq": -1}


@pytest.mark.parametrize(
    ("headers", "first_frame"),
    [
        (bearer("not-a-token"), None),
        ({}, {"type": "hello", "token": "not-a-token"}),
        ({}, {"type": "ping", "seq": 0, "ts": 0, "lat": 0, "lon": 0}),
        ({}, None),  # no hello within the hello timeout
    ],
)
async def test_bad_credentials_close_with_1008(server, headers, first_frame):
    async with websockets.connect(f"{server.ws_url}/v1/phone", additional_headers=headers) as ws:
        if first_frame is not None:
            await ws.send(json.dumps(first_frame))
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ws, timeout_s=5)
    assert closed.value.rcvd.code == 1008


async def test_a_token_in_the_query_string_never_authenticates(server):
    _, token = create_user(server)
    async with websockets.connect(f"{server.ws_url}/v1/phone?token={token}&access_token={token}") as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ws, timeout_s=5)
    assert closed.value.rcvd.code == 1008


async def test_duplicate_pings_are_acked_and_stored_once(server, engine):
    user_id, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    first = ping(0, ts=now_ms() - 1000)
    await ws.send(json.dumps(first))
    await until_ack(ws, 0)
    await ws.send(json.dumps(first))
    await ws.send(json.dumps({"type": "batch", "pings": [{k: v for k, v in first.items() if k != "type"}] * 3}))
    await ws.send(json.dumps(ping(1)))
    await until_ack(ws, 1)
    assert [row["seq"] for row in await stored_pings(engine, user_id)] == [0, 1]
    await ws.close()


async def test_an_older_fix_is_stored_but_does_not_move_the_last_location(server, engine, redis):
    user_id, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    now = now_ms()
    await ws.send(json.dumps(ping(0, ts=now, lat=25.0400)))
    await until_ack(ws, 0)
    await ws.send(json.dumps(ping(1, ts=now - 60_000, lat=25.0350)))
    await until_ack(ws, 1)
    assert len(await stored_pings(engine, user_id)) == 2
    assert (await last_location_row(engine, user_id))["lat"] == pytest.approx(25.0400)
    await asyncio.sleep(0.2)
    hot = await redis.hgetall(f"guardian:loc:{user_id}")
    assert float(hot[b"lat"]) == pytest.approx(25.0400)
    await ws.close()


async def test_a_teleport_is_stored_as_suspect_and_does_not_move_the_last_location(server, engine):
    user_id, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    now = now_ms()
    await ws.send(json.dumps(ping(0, ts=now - 10_000)))
    await ws.send(json.dumps(ping(1, ts=now, lat=22.6273, lon=120.3014)))  # Kaohsiung, 10 s later
    await ws.send(json.dumps(ping(2, ts=now + 1000, lat=TAIPEI_101[0] + 1e-4)))
    await until_ack(ws, 2)
    rows = await stored_pings(engine, user_id)
    assert [row["suspect"] for row in rows] == [None, ["teleport"], None]
    assert (await last_location_row(engine, user_id))["lat"] == pytest.approx(TAIPEI_101[0] + 1e-4)
    await ws.close()


async def test_future_and_stale_fixes_are_stored_as_suspect(server, engine):
    user_id, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    await ws.send(json.dumps(ping(0, ts=now_ms() + 3_600_000)))
    await ws.send(json.dumps(ping(1, ts=now_ms() - 30 * 86_400_000)))
    await until_ack(ws, 1)
    assert [row["suspect"] for row in await stored_pings(engine, user_id)] == [["future"], ["stale"]]
    assert await last_location_row(engine, user_id) is None
    await ws.close()


async def test_last_location_reaches_redis_and_its_geo_index(server, redis):
    user_id, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    await ws.send(json.dumps(ping(0, acc=7.5)))
    await until_ack(ws, 0)
    for _ in range(50):
        hot = await redis.hgetall(f"guardian:loc:{user_id}")
        if hot:
            break
        await asyncio.sleep(0.02)
    assert float(hot[b"lat"]) == pytest.approx(TAIPEI_101[0]) and float(hot[b"acc"]) == 7.5
    [(lon, lat)] = await redis.geopos("guardian:geo:last", user_id)
    assert (lat, lon) == (pytest.approx(TAIPEI_101[0], abs=1e-5), pytest.approx(TAIPEI_101[1], abs=1e-5))
    await ws.close()


BAD_FRAMES = [
    ("not json at all", "bad_json", None),
    ('{"type":"ping","seq":50,"ts":0,"lat":NaN,"lon":0}', "bad_json", None),
    ('{"type":"ping","seq":50,"ts":0,"lat":Infinity,"lon":0}', "bad_json", None),
    ('{"type":"ping","seq":50,"ts":0,"lat":1e400,"lon":0}', "invalid_field", "lat"),
    ('{"type":"launch_rocket"}', "unknown_type", "type"),
    ('{"seq":50}', "unknown_type", "type"),
    ("[1,2,3]", "invalid_field", None),
    ('{"type":"ping","seq":-3,"ts":0,"lat":0,"lon":0}', "invalid_field", "seq"),
    ('{"type":"ping","seq":2.5,"ts":0,"lat":0,"lon":0}', "invalid_field", "seq"),
    ('{"type":"ping","seq":"50","ts":0,"lat":0,"lon":0}', "invalid_field", "seq"),
    ('{"type":"ping","seq":50,"lat":0,"lon":0}', "invalid_field", "ts"),
    ('{"type":"ping","seq":50,"ts":0,"lon":0}', "invalid_field", "lat"),
    ('{"type":"ping","seq":50,"ts":0,"lat":91,"lon":0}', "invalid_field", "lat"),
    ('{"type":"ping","seq":50,"ts":0,"lat":0,"lon":-181}', "invalid_field", "lon"),
    ('{"type":"ping","seq":50,"ts":0,"lat":0,"lon":0,"acc":-4}', "invalid_field", "acc"),
    ('{"type":"ping","seq":50,"ts":0,"lat":0,"lon":0,"speed":-1}', "invalid_field", "speed"),
    ('{"type":"ping","seq":50,"ts":0,"lat":0,"lon":0,"heading":400}', "invalid_field", "heading"),
    ('{"type":"ping","seq":50,"ts":0,"lat":0,"lon":0,"battery":120}', "invalid_field", "battery"),
    ('{"type":"ping","seq":50,"ts":"yesterday","lat":0,"lon":0}', "invalid_field", "ts"),
    ('{"type":"ping","seq":50,"ts":"2026-11-21T10:00:00","lat":0,"lon":0}', "invalid_field", "ts"),
    ('{"type":"batch","pings":"all of them"}', "invalid_field", "pings"),
]


@pytest.mark.parametrize(("frame", "code", "field"), BAD_FRAMES)
async def test_each_bad_frame_gets_its_error_and_nothing_else_is_lost(server, engine, frame, code, field):
    user_id, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    await ws.send(json.dumps(ping(0, ts=now_ms() - 2000)))
    await ws.send(frame)
    await ws.send(json.dumps(ping(1)))
    frames = await until_ack(ws, 1)
    [error] = [f for f in frames if f["type"] == "error"]
    assert (error["code"], error.get("field")) == (code, field)
    assert error["message"]
    assert [row["seq"] for row in await stored_pings(engine, user_id)] == [0, 1]
    await ws.close()


async def test_a_binary_frame_is_refused_and_the_socket_stays_open(server, engine):
    user_id, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    await ws.send(json.dumps(ping(0)).encode())
    assert (await receive(ws))["code"] == "bad_json"
    await ws.send(json.dumps(ping(0)))
    await until_ack(ws, 0)
    await ws.close()


async def test_one_bad_ping_in_a_batch_refuses_only_itself(server, engine):
    user_id, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    pings = walk(0, 4, now_ms() - 5000)
    pings[2]["lat"] = 123.0
    await ws.send(json.dumps({"type": "batch", "pings": pings}))
    frames = await until_ack(ws, 3)
    assert [(f["code"], f["field"], f["seq"]) for f in frames if f["type"] == "error"] == [("invalid_field", "lat", 2)]
    assert [row["seq"] for row in await stored_pings(engine, user_id)] == [0, 1, 3]
    await ws.close()


async def test_a_batch_over_1000_pings_is_refused_whole(server, engine):
    user_id, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    compact = [{"seq": i, "ts": 1, "lat": 0, "lon": 0} for i in range(1001)]
    await ws.send(json.dumps({"type": "batch", "pings": compact}, separators=(",", ":")))
    error = await receive(ws)
    assert (error["code"], error["field"]) == ("too_large", "pings")
    await ws.send(json.dumps(ping(0)))
    await until_ack(ws, 0)
    assert [row["seq"] for row in await stored_pings(engine, user_id)] == [0]
    await ws.close()


async def test_a_frame_over_64_kib_closes_with_1009(server, engine):
    user_id, token = create_user(server)
    ws, _ = await connect_phone(server, token, max_size=None)
    await ws.send(json.dumps(ping(0)))
    await until_ack(ws, 0)
    await ws.send(json.dumps({**ping(1), "padding": "x" * 70_000}))
    with pytest.raises(ConnectionClosed) as closed:
        await receive(ws)
    assert closed.value.rcvd.code == 1009
    assert [row["seq"] for row in await stored_pings(engine, user_id)] == [0]


async def test_a_socket_that_keeps_sending_garbage_is_closed_with_1008(server):
    _, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    for _ in range(60):
        await ws.send("garbage")
    with pytest.raises(ConnectionClosed) as closed:
        for _ in range(100):
            await receive(ws)
    assert closed.value.rcvd.code == 1008


async def test_a_device_over_its_rate_limit_is_told_rate_limited(fresh_server, engine):
    server = fresh_server(GUARDIAN_RATE_PINGS_PER_S="1", GUARDIAN_RATE_BURST_PINGS="5")
    user_id, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    start = now_ms() - 20_000
    for fields in walk(0, 8, start):
        await ws.send(json.dumps({"type": "ping", **fields}))
    frames = await until_ack(ws, 7)
    limited = [f for f in frames if f["type"] == "error"]
    assert limited and all(f["code"] == "rate_limited" for f in limited)
    assert {f["seq"] for f in limited} == {5, 6, 7}
    assert [row["seq"] for row in await stored_pings(engine, user_id)] == [0, 1, 2, 3, 4]
    await ws.close()


async def test_a_full_ingest_queue_sheds_frames_and_resends_lose_nothing(fresh_server, engine):
    """Six phones into a queue of 20 rows flushed every 200 ms: some batches are refused
    `rate_limited` (never queued, never closed for it); resent, every ping is stored once."""
    server = fresh_server(GUARDIAN_INGEST_QUEUE_ROWS="20", GUARDIAN_FLUSH_MAX_ROWS="15",
                          GUARDIAN_FLUSH_INTERVAL_MS="200")
    phones = [create_user(server, name=f"Phone {i}") for i in range(6)]
    sockets = [(await connect_phone(server, token))[0] for _, token in phones]
    start = now_ms() - 100_000
    refused = 0

    async def stream(ws) -> None:
        nonlocal refused
        for first in range(0, 100, 25):
            while True:
                await ws.send(json.dumps({"type": "batch", "pings": walk(first, 25, start + first * 1000)}))
                answer = await until_type_or_ack(ws, first + 24)
                if answer["type"] == "ack":
                    break
                assert answer["code"] == "rate_limited" and "seq" not in answer, answer
                assert (answer["first_seq"], answer["last_seq"]) == (first, first + 24), answer
                refused += 1
                await asyncio.sleep(0.05)

    await asyncio.wait_for(asyncio.gather(*(stream(ws) for ws in sockets)), 60)
    assert refused > 0, "the queue never filled: the test did not exercise shedding"
    for user_id, _ in phones:
        assert [row["seq"] for row in await stored_pings(engine, user_id)] == list(range(100))
    for ws in sockets:
        await ws.close()


async def until_type_or_ack(ws, seq: int) -> dict:
    """The next error, or the ack covering `seq`."""
    while True:
        frame = await receive(ws, timeout_s=10)
        if frame["type"] == "error" or (frame["type"] == "ack" and frame["seq"] >= seq):
            return frame


async def test_pings_refused_for_a_full_queue_name_their_seq_and_never_close_the_socket(fresh_server, engine):
    """More refusals in a row than the garbage limit: the phone is not closed, the ack passes
    over the refused seqs (each was answered), and the resent pings are stored."""
    server = fresh_server(GUARDIAN_INGEST_QUEUE_ROWS="1", GUARDIAN_FLUSH_INTERVAL_MS="1000",
                          GUARDIAN_MAX_CONSECUTIVE_ERRORS="10")
    user_id, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    pings = walk(0, 30, now_ms() - 60_000)
    for fields in pings:
        await ws.send(json.dumps({"type": "ping", **fields}))
    frames = await until_ack(ws, 29)
    refused = sorted(frame["seq"] for frame in frames if frame["type"] == "error")
    assert all(frame["code"] == "rate_limited" for frame in frames if frame["type"] == "error")
    assert len(refused) >= 20, frames
    stored = [row["seq"] for row in await stored_pings(engine, user_id)]
    assert sorted(stored + refused) == list(range(30))
    # Sent again as new pings (the ack has passed their seqs), in one batch into the empty queue.
    again = [{**fields, "seq": new_seq}
             for new_seq, fields in enumerate((fields for fields in pings if fields["seq"] in refused), start=30)]
    await ws.send(json.dumps({"type": "batch", "pings": again}))
    assert (await until_ack(ws, again[-1]["seq"], timeout_s=10))[-1]["seq"] == again[-1]["seq"]
    stored = await stored_pings(engine, user_id)
    assert len(stored) == 30 and len({row["device_ts"] for row in stored}) == 30
    await ws.close()


async def test_a_dead_phone_is_dropped_by_keepalive(fresh_server):
    """A phone that completed the handshake and then went silent (no pong) is disconnected."""
    import base64
    import os

    server = fresh_server(GUARDIAN_KEEPALIVE_INTERVAL_S="0.5", GUARDIAN_KEEPALIVE_TIMEOUT_S="0.5")
    _, token = create_user(server)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /v1/phone HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    await writer.drain()
    received = b""
    async with asyncio.timeout(10):
        while chunk := await reader.read(4096):  # never answers a ping; EOF means dropped
            received += chunk
    writer.close()
    assert received.startswith(b"HTTP/1.1 101") and b"welcome" in received


async def test_a_duplicate_alone_is_acknowledged(server, engine):
    """The contract acks a duplicate: resent at or below the last ack, with nothing after it."""
    user_id, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    first = ping(0, ts=now_ms() - 1000)
    await ws.send(json.dumps(first))
    await until_ack(ws, 0)
    await ws.send(json.dumps(first))
    assert await receive(ws) == {"type": "ack", "seq": 0}
    await ws.send(json.dumps({"type": "batch", "pings": [{k: v for k, v in first.items() if k != "type"}] * 2}))
    assert await receive(ws) == {"type": "ack", "seq": 0}
    assert [row["seq"] for row in await stored_pings(engine, user_id)] == [0]
    await ws.close()


async def test_a_ping_resent_after_rate_limited_is_acknowledged_once_stored(fresh_server, engine):
    """The ack passed over the refused ping; resent with its seq, it is stored and must be acked."""
    server = fresh_server(GUARDIAN_RATE_PINGS_PER_S="2", GUARDIAN_RATE_BURST_PINGS="1")
    user_id, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    fixes = walk(0, 2, now_ms() - 10_000)
    await ws.send(json.dumps({"type": "ping", **fixes[0]}))
    await ws.send(json.dumps({"type": "ping", **fixes[1]}))
    frames = await until_ack(ws, 1)
    assert [(f["code"], f["seq"]) for f in frames if f["type"] == "error"] == [("rate_limited", 1)]
    await asyncio.sleep(1.0)
    await ws.send(json.dumps({"type": "ping", **fixes[1]}))
    assert await receive(ws) == {"type": "ack", "seq": 1}
    assert [row["seq"] for row in await stored_pings(engine, user_id)] == [0, 1]
    await ws.close()
