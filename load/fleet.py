"""Simulated phones: connect, stream pings at a fixed rate (open loop), time every ack.

A run is split over worker processes; each runs its share of phones on one
event loop and returns a FleetResult. Throughput is the pings whose ack arrived
inside the measurement window (after the warm-up): under overload that is what
the server sustains, however long its queue. Latency runs from a frame's send
time to the ack that covers its last seq, for frames sent inside the window
(and acked before the drain deadline). A frame refused `rate_limited` (a full
server sheds load that way) counts as an error, never as acked, and is not resent:
the load is open loop.

With `Plan.honour_retry` a phone behaves as the app does (DESIGN: `retry_after_ms`):
it keeps making fixes at its rate (the offered load stays open loop), holds the
refused ones and those made while it waits, and sends them all as batches once the
wait is over. Latency then runs from each fix's making to the ack that stores it, and
the result counts the refused pings beside the acked ones (goodput).
"""

import asyncio
import os
import heapq
import math
import multiprocessing
import random
import time
from collections import deque
from dataclasses import dataclass

import httpx
import msgspec
import uvloop
import websockets

from load.phonesocket import OPEN_TIMEOUT_S, PhoneSocket
from load.stats import FleetResult
from load.tracks import Track

CONNECT_CONCURRENCY = 200
DRAIN_S = 5.0
MAX_BATCH = 500  # pings per resent batch: 1,000 (the contract's most) of ours would pass the 64 KiB frame limit

_decode = msgspec.json.Decoder(dict).decode


@dataclass(frozen=True)
class Plan:
    url: str
    rate_hz: float
    batch: int
    duration_s: float
    warmup_s: float
    honour_retry: bool = False


def ws_url(url: str) -> str:
    return url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/v1/phone"


async def create_users(url: str, count: int, *, concurrency: int = 32) -> list[str]:
    """Register `count` users and return their device tokens."""
    tokens: list[str] = []
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def one(i: int) -> None:
            async with gate:
                response = await client.post("/v1/users", json={"name": f"Load phone {i}", "phone": f"+88690{i:07d}"})
                response.raise_for_status()
                tokens.append(response.json()["device_token"])

        await asyncio.gather(*(one(i) for i in range(count)))
    return tokens


class Phone:
    """One simulated phone: its socket, its track and the frames awaiting an ack."""

    def __init__(self, index: int, token: str, plan: Plan, result: FleetResult, clock: dict):
        self.token = token
        self.plan = plan
        self.result = result
        self.clock = clock
        self.track = Track(index)
        self.socket: PhoneSocket | None = None
        self._welcome: asyncio.Future | None = None
        self._closing = False
        self.seq = 0
        # (last seq, sent at, pings, the held pings it carries when honouring retry_after_ms)
        self.outstanding: deque[tuple[int, float, int, list | None]] = deque()
        # Last seqs of frames refused (`rate_limited`): the acks pass over them, but they were not stored.
        self.refused: set[int] = set()
        # Honouring retry_after_ms: until when to hold fixes, and the held ones (seq, text, made at).
        self.paused_until = 0.0
        self.held: list[tuple[int, str, float]] = []

    async def connect(self, gate: asyncio.Semaphore) -> bool:
        async with gate:
            self._welcome = asyncio.get_running_loop().create_future()
            try:
                self.socket = await PhoneSocket.connect(ws_url(self.plan.url), self.token, on_text=self._on_text,
                                                        on_closed=self._on_closed)
                async with asyncio.timeout(OPEN_TIMEOUT_S):
                    welcome = await self._welcome
            except (OSError, websockets.WebSocketException, TimeoutError) as error:
                self.error(f"connect:{type(error).__name__}")
                self._welcome, self._closing = None, True  # counted once, here
                if self.socket is not None:
                    self.socket.abort()
                    self.socket = None
                return False
        self.seq = welcome["acked_seq"] + 1
        self.result.connected += 1
        return True

    def send(self, frame: str) -> bool:
        try:
            self.socket.send_text(frame)
        except ConnectionError:
            self.error("closed")
            return False
        return True

    def tick(self, now: float, measured: bool) -> bool:
        """Make this tick's fixes and send what is due; False if the socket is gone."""
        if not self.plan.honour_retry:
            return self.send(self.frame(now, measured))
        self.held.extend(self._fixes(now, measured))
        if now < self.paused_until:
            return True
        while self.held:
            chunk, self.held = self.held[:MAX_BATCH], self.held[MAX_BATCH:]
            self.outstanding.append((chunk[-1][0], now if measured else -1.0, len(chunk), chunk))
            text = (f'{{"type":"ping",{chunk[0][1][1:]}' if len(chunk) == 1 else
                    '{"type":"batch","pings":[' + ",".join(ping for _, ping, _ in chunk) + "]}")
            if not self.send(text):
                return False
        return True

    def _fixes(self, now: float, measured: bool) -> list[tuple[int, str, float]]:
        """This tick's fixes, as held pings (made at `now`, or -1 before the window)."""
        plan = self.plan
        wall_ms = int(time.time() * 1000)
        fixes = []
        for i in range(plan.batch):
            lat, lon = self.track.step(1.0 / plan.rate_hz / plan.batch)
            ts = wall_ms - int((plan.batch - 1 - i) * 1000 / plan.rate_hz / plan.batch)
            fixes.append((self.seq, f'{{"seq":{self.seq},"ts":{ts},"lat":{lat:.7f},"lon":{lon:.7f},"acc":8.0,'
                                    f'"battery":80}}', now if measured else -1.0))
            self.seq += 1
        if measured:
            self.result.sent_pings += plan.batch
        return fixes

    def frame(self, now: float, measured: bool) -> str:
        """The next frame of this phone's track; remembers it until acked."""
        plan = self.plan
        fix_interval_s = 1.0 / plan.rate_hz / plan.batch
        wall_ms = int(time.time() * 1000)
        pings = []
        for i in range(plan.batch):
            lat, lon = self.track.step(fix_interval_s)
            ts = wall_ms - int((plan.batch - 1 - i) * fix_interval_s * 1000)
            pings.append(f'{{"seq":{self.seq + i},"ts":{ts},"lat":{lat:.7f},"lon":{lon:.7f},"acc":8.0,"battery":80}}')
        self.seq += plan.batch
        if measured:
            self.result.sent_pings += plan.batch
        self.outstanding.append((self.seq - 1, now if measured else -1.0, plan.batch, None))
        if plan.batch == 1:
            return '{"type":"ping",' + pings[0][1:]
        return '{"type":"batch","pings":[' + ",".join(pings) + "]}"

    def _on_text(self, data: bytes) -> None:
        frame = _decode(data)
        if not self._welcome.done():
            self._welcome.set_result(frame)
            return
        kind = frame.get("type")
        if kind == "ack":
            result = self.result
            now = time.monotonic()
            in_window = self.clock["measure_from"] <= now < self.clock["stop"]
            while self.outstanding and self.outstanding[0][0] <= frame["seq"]:
                last_seq, sent_at, count, held = self.outstanding.popleft()
                if last_seq in self.refused:
                    self.refused.discard(last_seq)
                    continue
                if in_window:
                    result.acked_pings += count
                if held is not None:
                    result.latencies_ms.extend((now - made_at) * 1000 for _, _, made_at in held if made_at >= 0)
                elif sent_at >= 0:
                    result.latencies_ms.append((now - sent_at) * 1000)
        elif kind == "error":
            self.error(frame.get("code", "?"))
            if self.plan.honour_retry:
                self._hold_refused(frame)
                return
            # One seq, a batch, or the range a socket told to wait dropped unread (several frames).
            first, last = frame.get("first_seq", frame.get("seq")), frame.get("last_seq", frame.get("seq"))
            if first is not None:
                self.refused.update(entry[0] for entry in self.outstanding if first <= entry[0] <= last)

    def _hold_refused(self, frame: dict) -> None:
        """The frames an error names (one seq, or a range of them) go back to the held fixes, in
        seq order, and the phone waits `retry_after_ms` before sending again."""
        first, last = frame.get("first_seq", frame.get("seq")), frame.get("last_seq", frame.get("seq"))
        if first is None:
            return
        kept = deque()
        for entry in self.outstanding:
            if first <= entry[0] <= last:
                self.held.extend(entry[3])
                self.result.refused_pings += entry[2]
            else:
                kept.append(entry)
        self.outstanding = kept
        self.held.sort()
        if frame.get("retry_after_ms") is not None:
            self.paused_until = max(self.paused_until, time.monotonic() + frame["retry_after_ms"] / 1000)

    def _on_closed(self) -> None:
        if self._welcome is not None and not self._welcome.done():
            self._welcome.set_exception(ConnectionError("closed before the welcome"))
        elif not self._closing:
            self.error("closed")

    def close(self) -> None:
        self._closing = True
        if self.socket is not None:
            self.socket.close()

    def error(self, code: str) -> None:
        self.result.errors[code] = self.result.errors.get(code, 0) + 1


TICK_S = 0.005


async def _stream(phones: list[Phone], plan: Plan, clock: dict) -> None:
    """Open loop: every phone sends at its own phase, on a shared 5 ms tick (one timer, not one per phone)."""
    interval_s = 1.0 / plan.rate_hz
    due = [(clock["start"] + random.uniform(0, interval_s), i) for i in range(len(phones))]
    heapq.heapify(due)
    while due:
        now = time.monotonic()
        if now >= clock["stop"]:
            return
        measured = now >= clock["measure_from"]
        while due and due[0][0] <= now:
            at, i = heapq.heappop(due)
            phone = phones[i]
            if phone.tick(now, measured):
                heapq.heappush(due, (at + interval_s, i))
        await asyncio.sleep(TICK_S)


async def _meter_window(meter, clock: dict, result: FleetResult) -> None:
    await asyncio.sleep(max(0.0, clock["measure_from"] - time.monotonic()))
    meter.start()
    await asyncio.sleep(max(0.0, clock["stop"] - time.monotonic()))
    result.cpu = meter.stop()


async def _run_share(tokens: list[str], first_index: int, plan: Plan, start_at_wall: float,
                     meter=None) -> FleetResult:
    result = FleetResult(phones=len(tokens))
    # All workers share one wall-clock start, turned into this process's monotonic clock.
    start = time.monotonic() + (start_at_wall - time.time())
    clock = {"start": start, "measure_from": start + plan.warmup_s, "stop": start + plan.warmup_s + plan.duration_s}
    result.window_s = plan.duration_s
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    phones = [Phone(first_index + i, token, plan, result, clock) for i, token in enumerate(tokens)]
    connected = [phone for phone, ok in zip(phones, await asyncio.gather(*(p.connect(gate) for p in phones))) if ok]
    metering = asyncio.create_task(_meter_window(meter, clock, result)) if meter else None
    try:
        await _stream(connected, plan, clock)
        deadline = clock["stop"] + DRAIN_S
        while any(phone.outstanding for phone in connected) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        # Frames never acked count as infinitely late: an overloaded p99 must not look good.
        for phone in connected:
            result.latencies_ms.extend(math.inf for last_seq, sent_at, _, held in phone.outstanding
                                       if sent_at >= 0 and held is None and last_seq not in phone.refused)
            result.latencies_ms.extend(math.inf for _, _, _, held in phone.outstanding if held is not None
                                       for _, _, made_at in held if made_at >= 0)
            result.latencies_ms.extend(math.inf for _, _, made_at in phone.held if made_at >= 0)
    finally:
        if metering is not None:
            await asyncio.gather(metering, return_exceptions=True)
        for phone in connected:
            phone.close()
        await asyncio.sleep(0.1)  # let the closing frames go out
    return result


def _worker(tokens: list[str], first_index: int, plan: Plan, start_at_wall: float, results, nice: int = 0) -> None:
    if nice:
        os.nice(nice)
    result = uvloop.run(_run_share(tokens, first_index, plan, start_at_wall))
    results.put(result)


CONNECTS_PER_S = 200  # what this 2-core machine manages, each with a token check and a welcome


def run(tokens: list[str], plan: Plan, *, procs: int = 1, connect_lead_s: float | None = None,
        meter=None, nice: int = 0) -> FleetResult:
    """Run the fleet over `procs` processes; streaming starts once every phone had time to connect.

    `meter` (start()/stop() -> dict) measures the measured window. `nice`: the generator's
    processes run that much below this one's priority (a fleet on the server's cores must not
    take them from a server that is niced itself); it always runs in processes of its own then.
    """
    if connect_lead_s is None:
        connect_lead_s = 1.0 + len(tokens) / CONNECTS_PER_S
    start_at_wall = time.time() + connect_lead_s
    if procs == 1 and not nice:
        return uvloop.run(_run_share(tokens, 0, plan, start_at_wall, meter))
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    shares = [tokens[i::procs] for i in range(procs)]
    workers = [
        context.Process(target=_worker, args=(share, i * len(shares[0]), plan, start_at_wall, results, nice))
        for i, share in enumerate(shares)
    ]
    for worker in workers:
        worker.start()
    cpu: dict[str, str] = {}
    if meter is not None:  # the measured window, from here: the workers keep the same wall clock
        time.sleep(max(0.0, start_at_wall + plan.warmup_s - time.time()))
        meter.start()
        time.sleep(plan.duration_s)
        cpu = meter.stop()
    total = FleetResult()
    for _ in workers:
        total.merge(results.get(timeout=plan.warmup_s + plan.duration_s + connect_lead_s + 120))
    for worker in workers:
        worker.join(10)
    total.cpu = cpu or total.cpu
    return total
