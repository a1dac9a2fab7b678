"""What the timer tests share: a user with PINs and a contact who has the app, a trip started
on the phone socket, and the clock moved by moving a trip's deadlines in PostgreSQL (the
servers sweep on their own clock; the deadline comes to them)."""

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import sqlalchemy as sa

from tests.servers import TAIPEI_101, bearer, create_user, until_ack, until_type

PIN, DURESS_PIN = "1234", "987654"
# Sweeps every 0.2 s: each step is seen within a second.
FAST = {"GUARDIAN_SWEEP_INTERVAL_S": "0.2"}
FRIEND_TOKEN = "friend-token-0000000001"


def iso_in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def rider(server, *, phone: str = "+886912345678", contact: str | None = None) -> tuple[str, str]:
    """A user with PINs set and, if given, an emergency contact (by phone number)."""
    user_id, token = create_user(server, phone=phone)
    assert httpx.put(f"{server.url}/v1/me/pins", json={"pin": PIN, "duress_pin": DURESS_PIN},
                     headers=bearer(token), timeout=10).status_code == 204
    if contact is not None:
        assert httpx.put(f"{server.url}/v1/me/contacts", json={"contacts": [{"name": "Friend", "phone": contact}]},
                         headers=bearer(token), timeout=5).status_code == 200
    return user_id, token


def friend_with_app(server, phone: str = "+886911111111") -> None:
    _, token = create_user(server, name="Friend", phone=phone)
    assert httpx.post(f"{server.url}/v1/me/push-token", json={"fcm_token": FRIEND_TOKEN},
                      headers=bearer(token), timeout=5).status_code == 204


def start_walk_over_http(server, token: str) -> str:
    response = httpx.post(f"{server.url}/v1/trips", json={"kind": "walk", "eta": iso_in(3600)},
                          headers=bearer(token), timeout=5)
    assert response.status_code == 201, response.text
    return response.json()["trip_id"]


async def start_trip(phone, **fields) -> dict:
    await phone.send(json.dumps({"type": "trip_start", **({"kind": "walk", "eta": iso_in(3600)} | fields)}))
    return await until_type(phone, "trip_started")


async def ping(phone, seq: int, at: tuple[float, float] = TAIPEI_101, *, ts_ms: int | None = None,
               acc: float = 8.0) -> None:
    await phone.send(json.dumps({"type": "ping", "seq": seq, "ts": ts_ms or int(time.time() * 1000),
                                 "lat": at[0], "lon": at[1], "acc": acc}))
    await until_ack(phone, seq)


async def make_due(engine, trip_id: str) -> None:
    """The trip's due_at is past: the next sweep finds it overdue."""
    async with engine.begin() as connection:
        await connection.execute(sa.text("UPDATE trips SET due_at = now() - interval '1 second' "
                                         "WHERE trip_id = :trip_id"), {"trip_id": trip_id})


async def make_unanswered(engine, trip_id: str) -> None:
    """The are_you_safe deadline is past: the next sweep raises the alert."""
    async with engine.begin() as connection:
        await connection.execute(sa.text("UPDATE trips SET answer_by = now() - interval '1 second' "
                                         "WHERE trip_id = :trip_id AND status = 'overdue'"), {"trip_id": trip_id})


async def trip_row(engine, trip_id: str) -> dict:
    async with engine.connect() as connection:
        row = (await connection.execute(sa.text("SELECT * FROM trips WHERE trip_id = :trip_id"),
                                        {"trip_id": trip_id})).one()
    return dict(row._mapping)


async def until_status(engine, trip_id: str, status: str, timeout_s: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        row = await trip_row(engine, trip_id)
        if row["status"] == status or time.monotonic() > deadline:
            assert row["status"] == status, row
            return row
        await asyncio.sleep(0.1)


async def count(engine, sql: str, **params) -> int:
    async with engine.connect() as connection:
        return await connection.scalar(sa.text(sql), params)
