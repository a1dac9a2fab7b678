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

    def __init__(self, env: dict[str, str], port: int | None = None, log_file=None):
        super().__init__([sys.executable, "-m", "server", "serve"], env, port, log_file)


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
    try:
        welcome = json.loads(await ws.recv())
    except BaseException:
        await ws.close()  # turned away (1011, 1013): the socket is closed here, not by the collector
        raise
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


PASSWORD = "correct horse battery staple"
TAIPEI_101 = (25.0339, 121.5645)


async def add_staff(engine, username: str, *, role: str = "dispatcher", precinct: str | None = "xinyi") -> None:
    """An account made the way `guardian dispatcher add` makes it."""
    from server.accounts import staff

    async with engine.begin() as connection:
        await staff.add(connection=connection, username=username, password=PASSWORD, role=role,
                        precinct_id=None if role == "command" else precinct)


def login(server: ServerProcess, username: str, password: str = PASSWORD) -> str:
    response = httpx.post(f"{server.url}/v1/console/login", json={"username": username, "password": password},
                          timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["token"]


async def connect_console(server: ServerProcess, token: str, origin: str | None = None):
    """A console socket and its snapshot frame."""
    ws = await websockets.connect(f"{server.ws_url}/v1/console", additional_headers=bearer(token),
                                  origin=origin or server.url)
    snapshot = await receive(ws)
    assert snapshot["type"] == "snapshot", snapshot
    return ws, snapshot


async def until_type(ws, kind: str, timeout_s: float = 5.0, **match) -> dict:
    """The next frame of this type (and these field values), skipping others."""
    async with asyncio.timeout(timeout_s):
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == kind and all(frame.get(key) == value for key, value in match.items()):
                return frame


async def quiet(ws, seconds: float) -> list[dict]:
    """Every frame that arrives within `seconds`."""
    frames = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                frames.append(json.loads(await ws.recv()))
    except TimeoutError:
        return frames


def sos_frame(sos_id: str | None = None, *, at: tuple[float, float] | None = TAIPEI_101, **fields) -> dict:
    import time
    import uuid

    frame = {"type": "sos", "sos_id": sos_id or str(uuid.uuid4()), **fields}
    if at is not None:
        frame.update(lat=at[0], lon=at[1], acc=8.0, ts=int(time.time() * 1000))
    return frame
