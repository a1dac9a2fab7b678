"""An overloaded phone socket sheds pings cheaply and truthfully, and never an SOS nor an alert user's pings.

The servers here flush every 400 ms into a small queue, so a few phones that send single
pings as fast as they can (ignoring `retry_after_ms`) keep it full; their rate limit is
out of the way, so every refusal they see is the queue's.
"""

import asyncio
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.core import refusals, wire
from server.phones import ingest, shedding
from tests.servers import connect_phone, create_user, sos_frame, stored_pings, until_ack, until_type

QUEUE_ROWS = 200
FLOOD_S = 3.0
FLOODERS = 4


def overload_settings() -> dict[str, str]:
    return {"GUARDIAN_INGEST_QUEUE_ROWS": str(QUEUE_ROWS), "GUARDIAN_INGEST_DEVICE_SHARE_ROWS": "1000000",
            "GUARDIAN_FLUSH_MAX_ROWS": "100000", "GUARDIAN_FLUSH_INTERVAL_MS": "400",
            "GUARDIAN_RATE_PINGS_PER_S": "1000000", "GUARDIAN_RATE_BURST_PINGS": "1000000"}


def fix(seq: int, start_ms: int) -> dict:
    return {"seq": seq, "ts": start_ms + seq * 10, "lat": 25.0339, "lon": 121.5645, "acc": 5.0}


def compact(frame: dict) -> str:
    """As the app (and the load generator) spells a frame: no whitespace, `type` first."""
    return json.dumps(frame, separators=(",", ":"))


def refused_seqs(frame: dict) -> set[int]:
    if "first_seq" in frame:
        return set(range(frame["first_seq"], frame["last_seq"] + 1))
    return {frame["seq"]} if "seq" in frame else set()


async def stored_seqs(engine, user_id: str) -> set[int]:
    return {row["seq"] for row in await stored_pings(engine, user_id)}


async def until_answer(ws, seqs: tuple[int, int], timeout_s: float = 10.0) -> dict:
    """The next ack, or the error refusing the batch of `seqs` (one batch in flight; the answer
    to pings dropped in the flood's last window may still come first)."""
    async with asyncio.timeout(timeout_s):
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == "ack" or (frame["type"] == "error" and (frame.get("first_seq"),
                                                                       frame.get("last_seq")) == seqs):
                return frame


class Flooder:
    """A phone sending single pings back to back for FLOOD_S, ignoring its acks and refusals;
    every frame it heard, in order."""

    def __init__(self, ws):
        self.ws = ws
        self.heard: list[dict] = []
        self.sent = 0
        self.start_ms = int(time.time() * 1000) - 3_600_000

    async def flood(self) -> None:
        reader = asyncio.create_task(self._read())
        try:
            deadline = time.monotonic() + FLOOD_S
            while time.monotonic() < deadline and self.sent < 100_000:
                await self.ws.send(compact({"type": "ping", **fix(self.sent, self.start_ms)}))
                self.sent += 1
                await asyncio.sleep(0.002)
            await asyncio.sleep(1.5)  # the refusals of its last window, and the flushes due
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _read(self) -> None:
        while True:
            self.heard.append(json.loads(await self.ws.recv()))

    async def resend_refused(self, stored: set[int], batch_pings: int = 100) -> None:
        """Resend every seq not stored, a batch at a time, each after the previous is acked, or
        after `retry_after_ms` once refused (bounded in tries and time)."""
        missing = [seq for seq in range(self.sent) if seq not in stored]
        deadline = time.monotonic() + 30
        while missing and time.monotonic() < deadline:
            chunk, missing = missing[:batch_pings], missing[batch_pings:]
            await self.ws.send(compact({"type": "batch", "pings": [fix(seq, self.start_ms) for seq in chunk]}))
            answer = await until_answer(self.ws, (chunk[0], chunk[-1]))
            if answer["type"] == "error":
                assert answer["code"] == "rate_limited", answer
                print(f"resend refused, waiting {answer['retry_after_ms']} ms")
                missing = chunk + missing
                await asyncio.sleep(answer["retry_after_ms"] / 1000)
        assert not missing

    def unstored_but_acked(self, stored: set[int]) -> set[int]:
        """Seqs an ack covered that were neither stored nor named by an error heard before it."""
        answered: set[int] = set()
        lies: set[int] = set()
        for frame in self.heard:
            if frame["type"] == "error":
                answered |= refused_seqs(frame)
            elif frame["type"] == "ack":
                lies |= {seq for seq in range(frame["seq"] + 1) if seq not in stored and seq not in answered}
        return lies


async def test_an_overloaded_socket_answers_an_sos_at_once_and_never_sheds_an_alert_users_pings(
        fresh_server, engine):
    """Flooders keep the queue full: they are refused `rate_limited` with a bounded
    `retry_after_ms`, and every ack they hear is truthful (stored, or named by an error before
    it); meanwhile an SOS is answered within a second, and a user in an alert has every ping
    acked and stored, none refused. Once the flood stops, the flooders resend what was refused
    and all of it is stored: goodput recovers."""
    server = fresh_server(**overload_settings())
    alert_user, alert_token = create_user(server, name="Alerting")
    alerting, _ = await connect_phone(server, alert_token)
    await alerting.send(json.dumps(sos_frame()))
    await until_type(alerting, "sos_ack")
    flooders = []
    for i in range(FLOODERS):
        user_id, token = create_user(server, name=f"Flooder {i}")
        flooders.append((user_id, Flooder((await connect_phone(server, token))[0])))
    _, sos_token = create_user(server, name="Pressing SOS")
    sos_phone, _ = await connect_phone(server, sos_token)

    async def alert_stream() -> list[dict]:
        start_ms = int(time.time() * 1000) - 60_000
        for seq in range(int(FLOOD_S * 5)):
            await alerting.send(json.dumps({"type": "ping", **fix(seq, start_ms)}))
            await asyncio.sleep(0.2)
        return await until_ack(alerting, int(FLOOD_S * 5) - 1, timeout_s=10)

    async def raise_sos_mid_flood() -> float:
        await asyncio.sleep(FLOOD_S / 2)
        sent = time.monotonic()
        await sos_phone.send(json.dumps(sos_frame()))
        await until_type(sos_phone, "sos_ack", timeout_s=10)
        return time.monotonic() - sent

    began = time.monotonic()
    flooding = asyncio.gather(*(flooder.flood() for _, flooder in flooders))
    alert_frames, sos_s = await asyncio.gather(alert_stream(), raise_sos_mid_flood())
    await flooding
    print(f"flood: {time.monotonic() - began:.1f} s, {[flooder.sent for _, flooder in flooders]} pings sent, "
          f"SOS answered in {sos_s * 1000:.0f} ms")

    assert sos_s < 1.0, f"SOS answered in {sos_s:.2f} s under the flood"
    assert [frame for frame in alert_frames if frame["type"] == "error"] == []
    assert [row["seq"] for row in await stored_pings(engine, alert_user)] == list(range(int(FLOOD_S * 5)))
    for user_id, flooder in flooders:
        refusals_heard = [frame for frame in flooder.heard if frame["type"] == "error"]
        assert refusals_heard, "the flood never filled the queue"
        assert all(frame["code"] == "rate_limited" and
                   ingest.RETRY_AFTER_MIN_MS <= frame["retry_after_ms"] <= ingest.RETRY_AFTER_MAX_MS
                   for frame in refusals_heard), refusals_heard[:3]
        stored = await stored_seqs(engine, user_id)
        assert flooder.unstored_but_acked(stored) == set()
        # Fewer answers than frames: a socket told to wait hears one error per window, not one per ping.
        assert len(refusals_heard) < flooder.sent - len(stored)

    # The flood is over: each flooder resends what it was refused, in batches, as the app does
    # (after `retry_after_ms` when refused again), and hears all of it stored.
    stored_now = [await stored_seqs(engine, user_id) for user_id, _ in flooders]
    began = time.monotonic()
    await asyncio.gather(*(flooder.resend_refused(stored) for (_, flooder), stored in zip(flooders, stored_now)))
    print(f"resent {[flooder.sent - len(stored) for (_, flooder), stored in zip(flooders, stored_now)]} refused "
          f"pings in {time.monotonic() - began:.1f} s")
    for user_id, flooder in flooders:
        assert sorted(await stored_seqs(engine, user_id)) == list(range(flooder.sent))
        await flooder.ws.close()
    await alerting.close()
    await sos_phone.close()


# --- the cheap test on the raw text, against the decoder ---------------------------------------

KEY = st.sampled_from(["type", "seq", "ts", "lat", "lon", "acc", "sos_id", "alert_id", "pin", "token", "trip_id",
                       "kind", "pings", "note"])
SCALAR = st.one_of(st.integers(-3, 2**64), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
                   st.none(), st.sampled_from(["ping", "sos", "sos_cancel", "hello", "safe", "trip_start",
                                               "trip_end", "batch", "x", "2026-12-01T10:00:00Z"]))
FRAMES = st.sampled_from([
    {"type": "ping", "seq": 7, "ts": 1764583200000, "lat": 25.03, "lon": 121.56, "acc": 8.0},
    {"type": "sos", "sos_id": "2f1c8a9e-4a39-4f5e-9d0e-5b8f7d0e9a11", "lat": 25.03, "lon": 121.56},
    {"type": "sos", "sos_id": "2f1c8a9e-4a39-4f5e-9d0e-5b8f7d0e9a11", "seq": 3},
    {"type": "sos_cancel", "alert_id": "2f1c8a9e-4a39-4f5e-9d0e-5b8f7d0e9a11", "pin": "1234"},
    {"type": "hello", "token": "abc"},
    {"type": "safe", "trip_id": "t", "pin": "1234"},
    {"type": "trip_start", "kind": "walk"},
    {"type": "trip_end", "trip_id": "t"},
    {"type": "batch", "pings": [{"seq": 1, "ts": 1764583200000, "lat": 25.0, "lon": 121.0}]},
])


@st.composite
def spelled(draw, value, depth: int = 0) -> str:
    """`value` as JSON text in a hostile spelling: whitespace, escapes, any key order."""
    space = draw(st.sampled_from(["", "", " ", "\n", "\t "]))
    if isinstance(value, dict):
        items = list(value.items())
        if draw(st.booleans()):
            items = draw(st.permutations(items))
        return "{" + space + ",".join(draw(spelled(key, depth + 1)) + space + ":" + space + draw(spelled(item, depth + 1))
                                      for key, item in items) + space + "}"
    if isinstance(value, list):
        return "[" + ",".join(draw(spelled(item, depth + 1)) for item in value) + "]"
    if isinstance(value, str):
        escape = draw(st.sampled_from(["none", "none", "unicode", "solidus"]))
        if escape == "unicode" and value:
            at = draw(st.integers(0, len(value) - 1))
            return '"' + value[:at] + f"\\u{ord(value[at]):04x}" + value[at + 1:] + '"'
        if escape == "solidus":
            return '"' + value.replace("/", "\\/") + '\\/"'
        return json.dumps(value)
    return json.dumps(value)


@st.composite
def hostile_frames(draw) -> str:
    """A phone frame, changed the ways an attacker (or a careless client) could: a duplicate or
    nested `type`, keys added or dropped, values swapped, then spelled hostilely (or compactly)."""
    frame = dict(draw(FRAMES))
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["set", "drop", "nest", "duplicate"]))
        key = draw(KEY)
        if action == "set":
            frame[key] = draw(SCALAR)
        elif action == "drop":
            frame.pop(key, None)
        elif action == "nest":
            frame[key] = {"type": draw(st.sampled_from(["sos", "ping", "hello"])), "seq": 1}
    text = draw(spelled(frame)) if draw(st.booleans()) else compact(frame)
    if draw(st.booleans()):  # a second `type` key, before or after: duplicate keys
        kind = draw(st.sampled_from(["sos", "sos_cancel", "hello", "safe", "trip_start", "trip_end", "ping"]))
        text = (f'{{"type":"{kind}",' + text[1:]) if draw(st.booleans()) else (text[:-1] + f',"type":"{kind}"}}')
    return text


def decoded(text: str):
    try:
        return wire.decode_frame(text)
    except refusals.Refusal as refusal:
        return refusal


@pytest.mark.no_services
@settings(max_examples=3000, deadline=None)
@given(text=hostile_frames())
def test_the_raw_ping_test_never_sheds_a_frame_that_decodes_to_anything_but_that_ping(text):
    """Whatever the spelling, a frame the raw test would shed decodes to a ping of the same seq,
    or is refused as malformed: never an `sos`, `sos_cancel`, `hello`, trip, `safe` or batch."""
    seq = shedding.ping_seq(text)
    if seq is None:
        return
    frame = decoded(text)
    assert isinstance(frame, wire.Ping | refusals.Refusal), (text, frame)
    assert not isinstance(frame, wire.Sos)
    if isinstance(frame, wire.Ping):
        assert frame.seq == seq


@pytest.mark.no_services
@settings(max_examples=300, deadline=None)
@given(seq=st.integers(0, wire.MAX_SEQ), lat=st.floats(-90, 90), lon=st.floats(-180, 180))
def test_the_raw_ping_test_sheds_the_pings_phones_send(seq, lat, lon):
    """The app's compact spelling (type first) is what the test recognises: shedding works."""
    text = compact({"type": "ping", "seq": seq, "ts": 1764583200000, "lat": lat, "lon": lon, "acc": 8.0})
    assert shedding.ping_seq(text) == (seq if seq < 10**18 else None)


@pytest.mark.no_services
@pytest.mark.parametrize("text", [
    '{"type":"ping","seq":1,"type":"sos","sos_id":"a"}',
    '{"type":"ping","seq":1,"x":{"type":"sos"}}',
    '{"type":"ping","seq":1,"t\\u0079pe":"sos","sos_id":"a"}',
    '{"type":"ping","seq":01,"ts":1,"lat":1,"lon":1}',
    '{"type":"ping" ,"seq":1,"ts":1,"lat":1,"lon":1}',
    '{"type":"sos","seq":1,"sos_id":"a"}',
    '{"type":"batch","seq":1,"pings":[]}',
])
def test_the_raw_ping_test_leaves_doubtful_frames_to_the_decoder(text):
    assert shedding.ping_seq(text) is None


async def test_healthz_shows_the_event_loops_recent_lag(server):
    """`loop_lag_ms` (p50, p99, max over the last 10 s) is what a benchmark reads while the
    process is overloaded; a quiet test server's loop is not late by a second."""
    import httpx

    async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
        lag = (await client.get("/healthz")).json()["loop_lag_ms"]
    assert set(lag) == {"p50", "p99", "max"}
    assert 0 <= lag["p50"] <= lag["p99"] <= lag["max"] < 1000, lag
