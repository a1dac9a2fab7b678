"""The hot state in Redis: rebuilt from PostgreSQL when Redis loses it, at start and while serving."""

import asyncio
import json
import time

import httpx
import sqlalchemy as sa

from server.core import keys
from tests.servers import TAIPEI_101, add_staff, bearer, connect_phone, create_user, login, until_ack


async def until_true(check, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.1)
    return False


async def test_a_redis_flushed_while_serving_gets_idle_users_and_officers_back(fresh_server, engine, redis):
    """Nobody pings again after the flush: the idle phone's last location and the officer's
    position come back from PostgreSQL, not from new reports."""
    server = fresh_server(GUARDIAN_SWEEP_INTERVAL_S="0.2")
    user_id, token = create_user(server)
    phone, _ = await connect_phone(server, token)
    await phone.send(json.dumps({"type": "ping", "seq": 0, "ts": int(time.time() * 1000), "lat": TAIPEI_101[0],
                                 "lon": TAIPEI_101[1]}))
    await until_ack(phone, 0)
    await phone.close()
    await add_staff(engine, "officer-1", role="officer")
    reported = httpx.post(f"{server.url}/v1/officer/location", json={"lat": 25.0330, "lon": 121.5600},
                          headers=bearer(login(server, "officer-1")), timeout=5)
    assert reported.status_code == 204, reported.text
    assert await redis.exists(keys.last_location(user_id))

    await redis.flushdb()

    async def restored() -> bool:
        return bool(await redis.exists(keys.last_location(user_id)) and await redis.zcard(keys.OFFICERS_GEO))

    assert await until_true(restored), "the hot state stayed empty while serving"
    [near] = await redis.geosearch(keys.OFFICERS_GEO, longitude=121.5600, latitude=25.0330, radius=100, unit="m")
    async with engine.connect() as connection:
        staff_id = await connection.scalar(sa.text("SELECT staff_id FROM staff WHERE username = 'officer-1'"))
    assert near.decode() == str(staff_id)
