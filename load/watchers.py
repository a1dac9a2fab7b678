"""Watchers under load: phones stream while watchers follow shared trips, timed fix → watcher.

Two phases against the same running server, in the same run: the fleet streams alone
(the ping ack latency without watchers), then `trips` of its phones check in (`POST
/v1/trips`), each trip is shared, and `watchers` watcher sockets (spread evenly over the
trips, in a process of their own) follow them while the fleet streams again. A location's
latency runs from its fix's device time (the phone's wall clock when it sent the ping) to
the moment a watcher receives it, on the same machine's clock.
"""

import asyncio
import multiprocessing
import time
from dataclasses import dataclass, field, replace
from datetime import datetime

import httpx
import msgspec
import uvloop

from load import fleet
from load.phonesocket import PhoneSocket
from load.stats import FleetResult, table

CONNECT_CONCURRENCY = 100
_decode = msgspec.json.Decoder(dict).decode


@dataclass
class WatchResult:
    watchers: int = 0
    connected: int = 0
    # (receive time, latency ms) of every location frame, epoch seconds: the parent keeps the window's.
    received: list[tuple[float, float]] = field(default_factory=list)
    closed: int = 0
    errors: dict[str, int] = field(default_factory=dict)


def ws_base(url: str) -> str:
    return url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)


async def share_trips(url: str, tokens: list[str]) -> list[str]:
    """A walk checked in for each of these phones' users, each shared: the share tokens."""
    eta_ms = int(time.time() * 1000) + 3600_000
    gate = asyncio.Semaphore(32)
    shares: list[str] = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def one(token: str) -> None:
            headers = {"Authorization": f"Bearer {token}"}
            async with gate:
                started = await client.post("/v1/trips", json={"kind": "walk", "eta": eta_ms, "replace": True},
                                            headers=headers)
                started.raise_for_status()
                link = await client.post(f"/v1/trips/{started.json()['trip_id']}/shares",
                                         json={"expires_in_s": 3600}, headers=headers)
                link.raise_for_status()
                shares.append(link.json()["token"])

        await asyncio.gather(*(one(token) for token in tokens))
    return shares


async def _watch(url: str, shares: list[str], watchers: int, ready, stop) -> WatchResult:
    result = WatchResult(watchers=watchers)
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    sockets: list[PhoneSocket] = []

    def on_text(data: bytes) -> None:
        frame = _decode(data)
        if frame.get("type") == "location":
            now = time.time()
            result.received.append((now, (now - datetime.fromisoformat(frame["ts"]).timestamp()) * 1000))

    def on_closed() -> None:
        if not stop.is_set():
            result.closed += 1

    async def one(index: int) -> None:
        async with gate:
            try:
                sockets.append(await PhoneSocket.connect(f"{ws_base(url)}/v1/share/{shares[index % len(shares)]}",
                                                         None, on_text=on_text, on_closed=on_closed))
                result.connected += 1
            except Exception as error:  # counted by kind and reported, whatever the handshake raised
                result.errors[type(error).__name__] = result.errors.get(type(error).__name__, 0) + 1

    await asyncio.gather(*(one(index) for index in range(watchers)))
    ready.set()
    while not stop.is_set():
        await asyncio.sleep(0.1)
    for socket in sockets:
        socket.close()
    await asyncio.sleep(0.1)
    return result


def _watch_in_process(url: str, shares: list[str], watchers: int, ready, stop, results) -> None:
    results.put(uvloop.run(_watch(url, shares, watchers, ready, stop)))


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run_watchers(*, url: str, phones: int, watchers: int, trips: int, duration_s: float, warmup_s: float,
                 procs: int) -> None:
    tokens = asyncio.run(fleet.create_users(url, phones))
    plan = fleet.Plan(url=url, rate_hz=1.0, batch=1, duration_s=duration_s, warmup_s=warmup_s)
    print(f"running: {phones} phones x 1 Hz, no watchers ...", flush=True)
    alone = fleet.run(tokens, plan, procs=procs)
    print(table([{"phase": "no watchers", **alone.row()}]), flush=True)

    shares = asyncio.run(share_trips(url, tokens[:trips]))
    print(f"{len(shares)} trips checked in and shared; connecting {watchers} watchers ...", flush=True)
    context = multiprocessing.get_context("spawn")
    ready, stop, results = context.Event(), context.Event(), context.Queue()
    process = context.Process(target=_watch_in_process, args=(url, shares, watchers, ready, stop, results))
    process.start()
    if not ready.wait(60 + watchers / 50):
        raise RuntimeError("the watchers did not connect in time")
    lead_s = 1.0 + phones / fleet.CONNECTS_PER_S
    measure_from = time.time() + lead_s + warmup_s
    print(f"running: {phones} phones x 1 Hz with {watchers} watchers on {len(shares)} trips ...", flush=True)
    watched = fleet.run(tokens, replace(plan), procs=procs, connect_lead_s=lead_s)
    stop.set()
    outcome: WatchResult = results.get(timeout=120)
    process.join(10)
    latencies = [ms for at, ms in outcome.received if measure_from <= at < measure_from + duration_s]
    print("\nping acks with and without watchers, and fix → watcher latency\n" + table([
        {"phase": "no watchers", **alone.row()}, {"phase": f"{watchers} watchers", **watched.row()},
        ratio_row(alone, watched)]), flush=True)
    print(table([{
        "watchers": f"{outcome.connected}/{outcome.watchers}", "trips": str(len(shares)),
        "locations received": f"{len(latencies):,}", "fix→watcher p50 ms": f"{percentile(latencies, 0.5):.1f}",
        "p99 ms": f"{percentile(latencies, 0.99):.1f}", "closed early": str(outcome.closed),
        "errors": ", ".join(f"{code}={count}" for code, count in sorted(outcome.errors.items())) or "0",
    }]), flush=True)


def ratio_row(alone: FleetResult, watched: FleetResult) -> dict[str, str]:
    before, after = alone.percentile_ms(0.99), watched.percentile_ms(0.99)
    return {"phase": "with/without", "p99 ms": f"{after / before:.2f}" if before else "nan"}
