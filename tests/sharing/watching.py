"""A phone on a trip and its watchers, over the real sockets and HTTP (the sharing tests' common steps)."""

import asyncio
import json
import time

import httpx
import websockets

from tests.servers import bearer, receive, until_ack, until_type

NEAR_101 = (25.0339, 121.5645)


def north(steps: int, start: tuple[float, float] = NEAR_101) -> tuple[float, float]:
    """`steps` times about 33 m north of `start`: fixes 2 s apart stay plausible (16 m/s)."""
    return round(start[0] + 0.0003 * steps, 6), start[1]


def taxi(**fields) -> dict:
    eta_ms = int(time.time() * 1000) + 30 * 60_000
    return {"type": "trip_start", "kind": "taxi", "plate": "abc1234", "driver_name": "Chen Wei",
            "vehicle": {"make": "Toyota Prius", "colour": "yellow"}, "destination": {"lat": 25.0478, "lon": 121.5170},
            "eta": eta_ms, **fields}


def hike(**fields) -> dict:
    back_ms = int(time.time() * 1000) + 4 * 3600_000
    route = [[121.5645, 25.0339], [121.5700, 25.0300], [121.5760, 25.0270], [121.5830, 25.0250]]
    return {"type": "trip_start", "kind": "hike", "expected_return": back_ms,
            "planned_route": {"type": "LineString", "coordinates": route},
            "destination": {"lat": 25.0250, "lon": 121.5830}, **fields}


async def start_trip(phone, frame: dict | None = None) -> str:
    await phone.send(json.dumps(frame or taxi()))
    started = await until_type(phone, "trip_started")
    return started["trip_id"]


def share(server, token: str, trip_id: str, **body) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/trips/{trip_id}/shares", json=body or None, headers=bearer(token), timeout=5)


def shared(server, token: str, trip_id: str, **body) -> dict:
    response = share(server, token, trip_id, **body)
    assert response.status_code == 201, response.text
    return response.json()


async def watch(server, share_token: str):
    """A watcher's socket and its first frame."""
    ws = await websockets.connect(f"{server.ws_url}/v1/share/{share_token}")
    try:
        first = await receive(ws)
    except BaseException:
        await ws.close()
        raise
    return ws, first


async def refused_with(server, share_token: str, timeout_s: float = 5.0) -> tuple[int, str]:
    """The close code and reason of a watcher socket the server turns away (after accepting it)."""
    async with websockets.connect(f"{server.ws_url}/v1/share/{share_token}") as ws:
        try:
            async with asyncio.timeout(timeout_s):
                async for frame in ws:
                    raise AssertionError(f"a turned-away watcher was sent {frame}")
        except websockets.ConnectionClosed:
            pass
        return ws.close_code, ws.close_reason


async def move(phone, seq: int, lat: float, lon: float, *, ts_ms: int | None = None) -> int:
    """One fix, acknowledged; its device time (epoch ms): by default 2 s per seq ahead of now, so
    that a few quick fixes are not judged implausibly fast."""
    ts_ms = ts_ms if ts_ms is not None else int(time.time() * 1000) + 2000 * seq
    await phone.send(json.dumps({"type": "ping", "seq": seq, "ts": ts_ms, "lat": lat, "lon": lon, "acc": 6.0}))
    await until_ack(phone, seq)
    return ts_ms
