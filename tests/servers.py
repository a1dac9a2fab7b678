"""Real server processes for tests, and a phone client speaking the wire contract."""

import asyncio
import json
import sys

import httpx
import websockets

from load import processes

free_port = processes.free_port


class ServerProcess(processes.ServerProcess):
    """`python -m server serve` on a free loopback port."""

    def __init__(self, env: dict[str, str], port: int | None = None):
        super().__init__([sys.executable, "-m", "server", "serve"], env, port)


def create_user(server: ServerProcess, name: str = "Ann Lin", phone: str = "+886912345678") -> tuple[str, str]:
    response = httpx.post(f"{server.url}/v1/users", json={"name": name, "phone": phone}, timeout=5)
    assert response.status_code == 201, response.text
    body = response.json()
    return body["user_id"], body["device_token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def connect_phone(server: ServerProcess, token: str, **options):
    """An authenticated phone socket and its welcome frame."""
    ws = await websockets.connect(f"{server.ws_url}/v1/phone", additional_headers=bearer(token), **options)
    welcome = json.loads(await ws.recv())
    assert welcome["type"] == "welcome", welcome
    return ws, welcome


async def receive(ws, timeout_s: float = 5.0) -> dict:
    async with asyncio.timeout(timeout_s):
        return json.loads(await ws.recv())


async def until_ack(ws, seq: int, timeout_s: float = 5.0) -> list[dict]:
    """Every frame up to and including the ack that covers `seq`."""
    frames = []
    while True:
        frame = await receive(ws, timeout_s)
        frames.append(frame)
        if frame["type"] == "ack" and frame["seq"] >= seq:
            return frames


async def stored_pings(engine, user_id: str) -> list[dict]:
    """Every stored ping of a user, by seq, as PostgreSQL has it."""
    import sqlalchemy as sa

    async with engine.connect() as connection:
        rows = await connection.execute(
            sa.text(
                "SELECT seq, ST_Y(location) AS lat, ST_X(location) AS lon, suspect, device_ts "
                "FROM pings WHERE user_id = :user_id ORDER BY seq"
            ),
            {"user_id": user_id},
        )
        return [dict(row._mapping) for row in rows]


async def last_location_row(engine, user_id: str) -> dict | None:
    import sqlalchemy as sa

    async with engine.connect() as connection:
        row = (
            await connection.execute(
                sa.text("SELECT ST_Y(location) AS lat, ST_X(location) AS lon, device_ts FROM last_locations "
                        "WHERE user_id = :user_id"),
                {"user_id": user_id},
            )
        ).first()
        return None if row is None else dict(row._mapping)
