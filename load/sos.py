"""SOS under load: consoles watch while phones raise SOS, timed from send to each console.

Runs in a process of its own beside a streaming fleet. Every SOS is raised by a
user of its own on a socket of its own, at an even spread over `spread_s`; every
console counts the `alert_opened` it receives per alert, so the run reports
latency (SOS sent → alert on a console; SOS sent → sos_ack) and whether every
SOS reached every console exactly once.
"""

import asyncio
import json
import math
import time
import uuid
from dataclasses import dataclass, field

import httpx
import uvloop
import websockets

from load.fleet import ws_url

TAIPEI = (25.0339, 121.5645)


@dataclass
class SosResult:
    raised: int = 0
    acked: int = 0
    consoles: int = 0
    to_console_ms: list[float] = field(default_factory=list)
    to_ack_ms: list[float] = field(default_factory=list)
    # (console, alert id) → how many alert_opened it received
    deliveries: dict = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    def row(self) -> dict[str, str]:
        expected = self.acked * self.consoles
        once = sum(1 for count in self.deliveries.values() if count == 1)
        twice = sum(1 for count in self.deliveries.values() if count > 1)
        missing = expected - len(self.deliveries)
        return {
            "SOS raised/acked": f"{self.raised}/{self.acked}",
            "consoles": str(self.consoles),
            "delivered once": f"{once}/{expected}",
            "missing": str(missing),
            "duplicates": str(twice),
            "SOS→console p50 ms": f"{percentile(self.to_console_ms, 0.50):.1f}",
            "p95 ms": f"{percentile(self.to_console_ms, 0.95):.1f}",
            "p99 ms": f"{percentile(self.to_console_ms, 0.99):.1f}",
            "SOS→sos_ack p50 ms": f"{percentile(self.to_ack_ms, 0.50):.1f}",
            "sos_ack p99 ms": f"{percentile(self.to_ack_ms, 0.99):.1f}",
            "errors": ", ".join(f"{code}={count}" for code, count in sorted(self.errors.items())) or "0",
        }


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _console(url: str, token: str, index: int, result: SosResult, opened_at: dict, stop: asyncio.Event):
    ws = await websockets.connect(url.replace("http://", "ws://", 1) + "/v1/console", origin=url,
                                  additional_headers={"Authorization": f"Bearer {token}"}, compression=None)
    snapshot = json.loads(await ws.recv())
    assert snapshot["type"] == "snapshot"
    result.consoles += 1

    async def listen():
        async for message in ws:
            now = time.monotonic()
            frame = json.loads(message)
            if frame["type"] == "alert_opened":
                key = (index, frame["alert"]["alert_id"])
                result.deliveries[key] = result.deliveries.get(key, 0) + 1
                opened_at.setdefault(key, now)

    listener = asyncio.create_task(listen())
    await stop.wait()
    listener.cancel()
    await asyncio.gather(listener, return_exceptions=True)
    await ws.close()


def _sos_frame() -> dict:
    return {"type": "sos", "sos_id": str(uuid.uuid4()), "lat": TAIPEI[0], "lon": TAIPEI[1], "acc": 10.0,
            "ts": int(time.time() * 1000)}


def _count(result: SosResult, code: str) -> None:
    result.errors[code] = result.errors.get(code, 0) + 1


async def _raise_over_http(client: httpx.AsyncClient, token: str, at: float, result: SosResult, sent: dict):
    """`POST /v1/sos`, timed from the request to its answer (the `sos_ack` body)."""
    await asyncio.sleep(max(0.0, at - time.monotonic()))
    frame = _sos_frame()
    del frame["type"]
    started = time.monotonic()
    result.raised += 1
    try:
        response = await client.post("/v1/sos", json=frame, headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as error:
        _count(result, type(error).__name__)
        return
    if response.status_code not in (200, 201):
        _count(result, f"http {response.status_code}")
        return
    result.acked += 1
    result.to_ack_ms.append((time.monotonic() - started) * 1000)
    sent[response.json()["alert_id"]] = started


async def _raise(url: str, token: str, at: float, result: SosResult, sent: dict):
    try:
        async with websockets.connect(ws_url(url), additional_headers={"Authorization": f"Bearer {token}"},
                                      compression=None) as ws:
            json.loads(await ws.recv())  # welcome
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            frame = _sos_frame()
            started = time.monotonic()
            await ws.send(json.dumps(frame))
            result.raised += 1
            async with asyncio.timeout(30):
                while True:
                    reply = json.loads(await ws.recv())
                    if reply["type"] == "sos_ack":
                        result.acked += 1
                        result.to_ack_ms.append((time.monotonic() - started) * 1000)
                        sent[reply["alert_id"]] = started
                        return
                    if reply["type"] == "error":
                        _count(result, reply["code"])
                        return
    except (OSError, websockets.WebSocketException, TimeoutError) as error:
        _count(result, type(error).__name__)


async def run(*, url: str, sos_tokens: list[str], console_tokens: list[str], spread_s: float,
              start_at_wall: float, settle_s: float = 30.0, via: str = "socket") -> SosResult:
    """Consoles connect first; SOS go out from `start_at_wall`, evenly over `spread_s`, each on a
    phone socket of its own (`via="socket"`) or as `POST /v1/sos` (`via="http"`)."""
    result, opened_at, sent = SosResult(), {}, {}
    stop = asyncio.Event()
    consoles = [asyncio.create_task(_console(url, token, i, result, opened_at, stop))
                for i, token in enumerate(console_tokens)]
    while result.consoles < len(console_tokens):
        await asyncio.sleep(0.05)
    start = time.monotonic() + max(0.0, start_at_wall - time.time())
    step = spread_s / max(1, len(sos_tokens))
    if via == "http":
        async with httpx.AsyncClient(base_url=url, timeout=30,
                                     limits=httpx.Limits(max_connections=len(sos_tokens))) as client:
            await asyncio.gather(*(_raise_over_http(client, token, start + i * step, result, sent)
                                   for i, token in enumerate(sos_tokens)))
    else:
        await asyncio.gather(*(_raise(url, token, start + i * step, result, sent)
                               for i, token in enumerate(sos_tokens)))
    # Late is not lost: wait (bounded) for every console to be shown every acknowledged SOS.
    deadline = time.monotonic() + settle_s
    while len(opened_at) < result.acked * len(console_tokens) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*consoles, return_exceptions=True)
    for (index, alert_id), at in opened_at.items():
        if alert_id in sent:
            result.to_console_ms.append((at - sent[alert_id]) * 1000)
    # An SOS that never reached a console counts as infinitely late.
    result.to_console_ms += [math.inf] * (result.acked * len(console_tokens) - len(opened_at))
    return result


def run_in_process(kwargs: dict, results) -> None:
    results.put(uvloop.run(run(**kwargs)))


def console_tokens(url: str, username: str, password: str, count: int) -> list[str]:
    """`count` console sessions of one account (one login each)."""
    with httpx.Client(base_url=url, timeout=30) as client:
        tokens = []
        for _ in range(count):
            response = client.post("/v1/console/login", json={"username": username, "password": password})
            response.raise_for_status()
            tokens.append(response.json()["token"])
        return tokens
