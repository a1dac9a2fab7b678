"""The SOS over HTTP while the main pool is exhausted or PostgreSQL is gone (issue 9 #10)."""

import asyncio
import time

import httpx
import sqlalchemy as sa

from tests.conftest import TEST_ENV
from tests.proxy import CuttableProxy, port_of, through
from tests.servers import add_staff, bearer, create_user, sos_frame


async def test_http_sos_is_answered_while_the_main_pool_is_exhausted(fresh_server, engine):
    """Logins blocked behind a lock on `staff` hold every connection of the main pool; the SOS
    authenticates and commits on the alert path's own pool, so it does not wait for them."""
    server = fresh_server(GUARDIAN_DB_POOL_SIZE="1")
    await add_staff(engine, "desk")
    _, token = create_user(server)
    async with engine.connect() as locker, httpx.AsyncClient(timeout=30) as client:
        await locker.execute(sa.text("LOCK TABLE staff IN ACCESS EXCLUSIVE MODE"))
        logins = [asyncio.create_task(client.post(f"{server.url}/v1/console/login",
                                                  json={"username": "desk", "password": "x" * 12}))
                  for _ in range(6)]
        await asyncio.sleep(1.0)  # every main-pool connection is now waiting on the lock
        started = time.monotonic()
        response = await client.post(f"{server.url}/v1/sos", json=sos_frame(), headers=bearer(token))
        took_s = time.monotonic() - started
        await locker.rollback()
        await asyncio.gather(*logins, return_exceptions=True)
    assert response.status_code == 201, response.text
    assert took_s < 3.0, f"the SOS waited {took_s:.1f} s for the main pool"


async def test_http_sos_answers_503_unavailable_not_500_while_postgresql_is_unreachable(fresh_server):
    with CuttableProxy(port_of(TEST_ENV["GUARDIAN_DATABASE_URL"])) as proxy:
        server = fresh_server(GUARDIAN_DATABASE_URL=through(proxy, TEST_ENV["GUARDIAN_DATABASE_URL"]))
        _, token = create_user(server)
        proxy.cut()
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(2):  # the first finds a dead pooled connection, the second none at all
                sos = await client.post(f"{server.url}/v1/sos", json=sos_frame(), headers=bearer(token))
                assert sos.status_code == 503, sos.text
                assert sos.json()["code"] == "unavailable"
            for method, path in (("POST", "/v1/pings"), ("GET", "/v1/me/location")):
                other = await client.request(method, f"{server.url}{path}", json=[], headers=bearer(token))
                assert other.status_code == 503, (path, other.text)
                assert other.json()["code"] == "unavailable"
            registration = await client.post(f"{server.url}/v1/users", json={"name": "Bo", "phone": "+886900000000"})
            assert registration.status_code == 503, registration.text
        proxy.restore()
