"""Simulated phones: connect, stream pings at a fixed rate (open loop), time every ack.

A run is split over worker processes; each runs its share of phones on one
event loop and returns a FleetResult. Pings sent inside the measurement window
(after the warm-up) and acknowledged before the drain deadline are counted;
latency runs from a frame's send time to the ack that covers its last seq.
"""

import asyncio
import json
import multiprocessing
import random
import time
from collections import deque
from dataclasses import dataclass

import httpx
import uvloop
import websockets

from load.stats import FleetResult
from load.tracks import Track

CONNECT_CONCURRENCY = 200
DRAIN_S = 5.0


@dataclass(frozen=True)
class Plan:
    url: str
    rate_hz: float
    batch: int
    duration_s: float
    warmup_s: float


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
    def __init__(self, index: int, token: str, plan: Plan, result: FleetResult, clock: dict):
        self.token = token
        self.plan = plan
        self.result = result
        self.clock = clock
        self.track = Track(index)
        self.outstanding: deque[tuple[int, float, int]] = deque()  # (last seq, sent at, pings)

    async def run(self, gate: asyncio.Semaphore) -> None:
        async with gate:
            try:
                ws = await websockets.connect(
                    ws_url(self.plan.url), additional_headers={"Authorization": f"Bearer {self.token}"},
                    compression=None, open_timeout=30,
                )
                welcome = json.loads(await ws.recv())
            except (OSError, websockets.WebSocketException, TimeoutError) as error:
                self._error(f"connect:{type(error).__name__}")
                return
        self.result.connected += 1
        receiver = asyncio.create_task(self._receive(ws))
        try:
            await self._send(ws, welcome["acked_seq"] + 1)
            deadline = self.clock["stop"] + DRAIN_S
            while self.outstanding and time.monotonic() < deadline and not receiver.done():
                await asyncio.sleep(0.05)
        except websockets.ConnectionClosed:
            self._error("closed")
        finally:
            receiver.cancel()
            await asyncio.gather(receiver, return_exceptions=True)
            await ws.close()

    async def _send(self, ws, seq: int) -> None:
        plan = self.plan
        interval_s = 1.0 / plan.rate_hz
        fix_interval_s = interval_s / plan.batch
        next_at = self.clock["start"] + random.uniform(0, interval_s)
        while True:
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.monotonic()
            if now >= self.clock["stop"]:
                return
            wall_ms = int(time.time() * 1000)
            pings = []
            for i in range(plan.batch):
                lat, lon = self.track.step(fix_interval_s)
                ts = wall_ms - int((plan.batch - 1 - i) * fix_interval_s * 1000)
                pings.append(f'{{"seq":{seq + i},"ts":{ts},"lat":{lat:.7f},"lon":{lon:.7f},"acc":8.0,"battery":80}}')
            if plan.batch == 1:
                frame = '{"type":"ping",' + pings[0][1:]
            else:
                frame = '{"type":"batch","pings":[' + ",".join(pings) + "]}"
            await ws.send(frame)
            seq += plan.batch
            measured = now >= self.clock["measure_from"]
            if measured:
                self.result.sent_pings += plan.batch
            self.outstanding.append((seq - 1, now if measured else -1.0, plan.batch))
            next_at += interval_s

    async def _receive(self, ws) -> None:
        result = self.result
        async for message in ws:
            frame = json.loads(message)
            kind = frame.get("type")
            if kind == "ack":
                now = time.monotonic()
                while self.outstanding and self.outstanding[0][0] <= frame["seq"]:
                    _, sent_at, count = self.outstanding.popleft()
                    if sent_at >= 0:
                        result.acked_pings += count
                        result.latencies_ms.append((now - sent_at) * 1000)
            elif kind == "error":
                self._error(frame.get("code", "?"))

    def _error(self, code: str) -> None:
        self.result.errors[code] = self.result.errors.get(code, 0) + 1


async def _run_share(tokens: list[str], first_index: int, plan: Plan, start_at_wall: float) -> FleetResult:
    result = FleetResult(phones=len(tokens))
    # All workers share one wall-clock start, turned into this process's monotonic clock.
    start = time.monotonic() + (start_at_wall - time.time())
    clock = {"start": start, "measure_from": start + plan.warmup_s, "stop": start + plan.warmup_s + plan.duration_s}
    result.window_s = plan.duration_s
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    phones = [Phone(first_index + i, token, plan, result, clock) for i, token in enumerate(tokens)]
    await asyncio.gather(*(phone.run(gate) for phone in phones))
    return result


def _worker(tokens: list[str], first_index: int, plan: Plan, start_at_wall: float, results) -> None:
    result = uvloop.run(_run_share(tokens, first_index, plan, start_at_wall))
    results.put(result)


def run(tokens: list[str], plan: Plan, *, procs: int = 1, connect_lead_s: float = 10.0) -> FleetResult:
    """Run the fleet over `procs` processes; streaming starts `connect_lead_s` from now."""
    start_at_wall = time.time() + connect_lead_s
    if procs == 1:
        return uvloop.run(_run_share(tokens, 0, plan, start_at_wall))
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    shares = [tokens[i::procs] for i in range(procs)]
    workers = [
        context.Process(target=_worker, args=(share, i * len(shares[0]), plan, start_at_wall, results))
        for i, share in enumerate(shares)
    ]
    for worker in workers:
        worker.start()
    total = FleetResult()
    for _ in workers:
        total.merge(results.get(timeout=plan.warmup_s + plan.duration_s + connect_lead_s + 120))
    for worker in workers:
        worker.join(10)
    return total
