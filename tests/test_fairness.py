"""A few greedy devices cannot shed a well-behaved phone, nor a reconnect storm on one token slow it.

The servers here flush every 250 ms into a small queue, so a handful of devices blasting
batches keeps it full for most of each flush interval; their rate limit is out of the way,
so every refusal they see is the queue's.
"""

import asyncio
import json
import time

import httpx
import pytest
import websockets
from hypothesis import given, settings, target
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from server.phones import ingest
from server.core.ratelimit import RateLimiter
from tests.servers import connect_phone, create_user, receive, sos_frame, until_type

QUEUE_ROWS = 300
SHARE_ROWS = 10
GREEDY_BATCH = 20
FLOOD_S = 4.0
BUSY = "the server is busy storing pings; resend later"


def flood_settings(**more: str) -> dict[str, str]:
    return {"GUARDIAN_INGEST_QUEUE_ROWS": str(QUEUE_ROWS), "GUARDIAN_INGEST_DEVICE_SHARE_ROWS": str(SHARE_ROWS),
            "GUARDIAN_FLUSH_MAX_ROWS": "100000", "GUARDIAN_FLUSH_INTERVAL_MS": "250",
            "GUARDIAN_RATE_PINGS_PER_S": "1000000", "GUARDIAN_RATE_BURST_PINGS": "1000000", **more}


def ping(seq: int, start_ms: int) -> dict:
    return {"seq": seq, "ts": start_ms + seq * 10, "lat": 25.0339, "lon": 121.5645, "acc": 5.0}


class Greedy:
    """A device that sends a batch every 20 ms for FLOOD_S, never waiting for its acks."""

    def __init__(self, ws):
        self.ws = ws
        self.refusals: list[dict] = []
        self.acked = -1

    async def flood(self) -> None:
        start_ms = int(time.time() * 1000) - 86_400_000
        reader = asyncio.create_task(self._read())
        try:
            deadline = time.monotonic() + FLOOD_S
            for first in range(0, 1_000_000, GREEDY_BATCH):
                if time.monotonic() > deadline:
                    break
                pings = [ping(seq, start_ms) for seq in range(first, first + GREEDY_BATCH)]
                await self.ws.send(json.dumps({"type": "batch", "pings": pings}))
                await asyncio.sleep(0.02)
            await asyncio.sleep(1.0)  # the answers to its last frames
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _read(self) -> None:
        while True:
            frame = json.loads(await self.ws.recv())
            if frame["type"] == "error":
                self.refusals.append(frame)
            elif frame["type"] == "ack":
                self.acked = frame["seq"]


async def steady(ws, *, hz: float = 5.0) -> tuple[list[float], list[dict]]:
    """A phone pinging at `hz` during the flood, not waiting for its acks (a ping or two in
    flight): the latency of each ping's ack, and every error it heard."""
    start_ms = int(time.time() * 1000) - 60_000
    sent_at: dict[int, float] = {}
    latencies_s, errors = [], []
    last_seq = int(FLOOD_S * hz) - 1

    async def read() -> None:
        while True:
            frame = await receive(ws, timeout_s=5)
            if frame["type"] == "error":
                errors.append(frame)
            elif frame["type"] == "ack":
                for seq in [seq for seq in sent_at if seq <= frame["seq"]]:
                    latencies_s.append(time.monotonic() - sent_at.pop(seq))
                if frame["seq"] >= last_seq:
                    return

    reader = asyncio.create_task(read())
    began = time.monotonic()
    for seq in range(last_seq + 1):
        await asyncio.sleep(max(0.0, began + seq / hz - time.monotonic()))
        sent_at[seq] = time.monotonic()
        await ws.send(json.dumps({"type": "ping", **ping(seq, start_ms)}))
    await asyncio.wait_for(reader, 10)
    return latencies_s, errors


async def watch_queue(server, stop: asyncio.Event) -> list[int]:
    """The ingest queue's depth (from /healthz) every 20 ms until stopped."""
    depths = []
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
        for _ in range(1000):
            if stop.is_set():
                break
            depths.append((await client.get("/healthz")).json()["ingest_queued_rows"])
            await asyncio.sleep(0.02)
    return depths


async def flood_while(server, greedy_count: int, phone) -> tuple[list[Greedy], list[int], object]:
    """Greedy devices flood while `phone()` runs; the greedy devices, the queue depths seen and
    what `phone()` returned."""
    greedy = [Greedy((await connect_phone(server, token))[0])
              for _, token in (create_user(server, name=f"Greedy {i}") for i in range(greedy_count))]
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_queue(server, stop))
    flooding = asyncio.gather(*(device.flood() for device in greedy))
    await asyncio.sleep(0.3)  # the queue is full before the phone starts
    result = await phone()
    await flooding
    stop.set()
    depths = await watcher
    for device in greedy:
        await device.ws.close()
    return greedy, depths, result


async def test_greedy_devices_flooding_the_queue_never_shed_a_steady_phone(fresh_server):
    """Four devices keep a full queue; each is refused `rate_limited` once it holds its share,
    while a phone with a ping or two in flight is never refused, its acks keep coming, and the
    queue stays under its hard cap."""
    server = fresh_server(**flood_settings())
    _, token = create_user(server, name="Steady")
    ws, _ = await connect_phone(server, token)
    greedy, depths, (latencies_s, errors) = await flood_while(server, 4, lambda: steady(ws))
    await ws.close()
    print(f"steady phone: {len(latencies_s)} acks, max {max(latencies_s) * 1000:.0f} ms; greedy refused "
          f"{[len(device.refusals) for device in greedy]} frames; queue depth max {max(depths)}")
    assert errors == []
    assert len(latencies_s) == FLOOD_S * 5  # every ping acked, none refused
    assert max(latencies_s) < 2.0  # within a flush or a few, however the greedy flood
    assert all(len(device.refusals) > 0 for device in greedy), "the flood never filled the queue"
    assert all(refusal["code"] == "rate_limited" and refusal["message"] == BUSY
               for device in greedy for refusal in device.refusals)
    assert all(device.acked > 0 for device in greedy)  # shed down to their share, not shut out
    assert max(depths) < ingest.HARD_CAP_FACTOR * QUEUE_ROWS + GREEDY_BATCH


async def test_at_the_hard_cap_every_device_is_shed_but_an_alert_users_pings(fresh_server):
    """With shares too large to matter, the flood reaches the hard cap: a phone without an
    alert is then shed like the greedy ones, while the pings of a user who raised an SOS are
    all stored, none refused; the queue never passes the cap by more than a frame or two."""
    # Flushes every 500 ms: the queue sits at its cap for most of each interval.
    server = fresh_server(**flood_settings(GUARDIAN_INGEST_DEVICE_SHARE_ROWS="1000000",
                                           GUARDIAN_FLUSH_INTERVAL_MS="500"))
    _, calm_token = create_user(server, name="Calm")
    _, alert_token = create_user(server, name="Alerting")
    calm, _ = await connect_phone(server, calm_token)
    alerting, _ = await connect_phone(server, alert_token)
    await alerting.send(json.dumps(sos_frame()))
    await until_type(alerting, "sos_ack")

    async def both():
        return await asyncio.gather(steady(calm), steady(alerting))

    greedy, depths, ((_, calm_errors), (alert_latencies_s, alert_errors)) = await flood_while(server, 4, both)
    await calm.close()
    await alerting.close()
    print(f"alert user: {len(alert_latencies_s)} acks; calm phone refused {len(calm_errors)}; "
          f"queue depth max {max(depths)}")
    assert alert_errors == []
    assert len(alert_latencies_s) == FLOOD_S * 5  # every ping acked, none refused
    assert calm_errors and all(error["message"] == BUSY for error in calm_errors)
    assert max(depths) < ingest.HARD_CAP_FACTOR * QUEUE_ROWS + GREEDY_BATCH + 2


async def refused_connect(server, token: str, *, hello: bool = False) -> int | None:
    """Connect with `token` (on the upgrade, or in a hello frame): None if welcomed, else the close code."""
    headers = {} if hello else {"Authorization": f"Bearer {token}"}
    async with websockets.connect(f"{server.ws_url}/v1/phone", additional_headers=headers) as ws:
        if hello:
            await ws.send(json.dumps({"type": "hello", "token": token}))
        try:
            frame = await receive(ws)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None
            if closed.rcvd.code == 1013:
                assert closed.rcvd.reason.startswith("too many connects of this device token; retry in ")
            return closed.rcvd.code
        assert frame["type"] == "welcome", frame
        return None


async def test_a_token_reconnecting_in_a_tight_loop_is_closed_1013_after_its_burst(fresh_server):
    """Three connects pass, the fourth (by hello too) is closed 1013 before its token is looked
    up (an unknown token is refused the same way, not 1008), and another device connects fine."""
    server = fresh_server(GUARDIAN_PHONE_CONNECT_BURST="3", GUARDIAN_PHONE_CONNECTS_PER_S="0.1")
    _, token = create_user(server, name="Stormy")
    _, other_token = create_user(server, name="Other")
    assert [await refused_connect(server, token) for _ in range(3)] == [None, None, None]
    assert [await refused_connect(server, token) for _ in range(20)] == [1013] * 20
    assert await refused_connect(server, token, hello=True) == 1013
    assert await refused_connect(server, other_token) is None
    unknown = "not-a-device-token"
    assert [await refused_connect(server, unknown) for _ in range(4)] == [1008, 1008, 1008, 1013]


async def test_a_token_over_its_connect_limit_gets_in_again_once_its_bucket_refills(fresh_server):
    server = fresh_server(GUARDIAN_PHONE_CONNECT_BURST="1", GUARDIAN_PHONE_CONNECTS_PER_S="2")
    _, token = create_user(server)
    assert await refused_connect(server, token) is None
    assert await refused_connect(server, token) == 1013
    await asyncio.sleep(0.6)
    assert await refused_connect(server, token) is None


@pytest.mark.no_services
@settings(max_examples=200, deadline=None)
@given(share_rows=st.integers(2, 30), max_batch=st.integers(1, 30), greedy_count=st.integers(1, 8),
       extra_rows=st.integers(0, 50), data=st.data())
def test_a_device_with_a_ping_or_two_in_flight_is_never_shed_while_the_greedy_fit_above_the_queue(
        share_rows, max_batch, greedy_count, extra_rows, data):
    """A model of the queue (FIFO, flushes of any size) under `ingest.admits`. Once the queue
    is full a device adds only while it holds less than its share, so above the queue the
    devices hold at most a share and a batch each: when that fits under the hard cap, a phone
    with at most one ping in flight is never refused; and the queue never passes the cap by
    more than a frame."""
    # The smallest queue whose room above it holds every device's share and batch, and more.
    queue_rows = max_batch + (greedy_count + 1) * (share_rows + max_batch) + extra_rows
    queue: list[int] = []  # the device of each queued row, oldest first
    steady = greedy_count
    # Mostly greedy frames, some flushes (of any size up to a batch), a steady ping now and then.
    steps = data.draw(st.lists(st.tuples(st.sampled_from("ggggggfs"), st.integers(0, greedy_count - 1),
                                         st.integers(1, max_batch)), min_size=1, max_size=400))
    deepest = 0
    for kind, device, rows in steps:
        if kind == "f":
            del queue[:rows]
            continue
        if kind == "s":
            device, rows = steady, 1
        pending = queue.count(device)
        if device == steady and pending > 1:
            continue  # well behaved: at most a ping or two in flight
        admitted = ingest.admits(queued_rows=len(queue), queue_rows=queue_rows, pending_rows=pending,
                                 share_rows=share_rows)
        assert admitted or device != steady, (len(queue), queue_rows)
        if admitted:
            queue.extend([device] * rows)
        assert len(queue) < ingest.HARD_CAP_FACTOR * queue_rows + max_batch
        deepest = max(deepest, len(queue))
    target(deepest / queue_rows)  # steer towards floods that fill the queue


@pytest.mark.no_services
def test_a_flood_of_fresh_keys_keeps_the_buckets_bounded():
    """Every key spent a token a moment ago (none has refilled, so none is forgettable as full):
    still at most `max_keys` buckets, the idlest forgotten first (a key still in use keeps its
    spent bucket), and a new key still gets its burst."""
    limiter = RateLimiter(rate_per_s=0.001, burst=10, max_keys=100)
    assert limiter.take("storm", 10)
    for key in range(10_000):
        assert limiter.take(key)
        assert limiter.key_count <= 100
        if key % 10 == 0:  # the storm goes on amid the flood: its spent bucket is never forgotten
            assert not limiter.take("storm")
    assert limiter.take("new", 10)
