"""Real PostgreSQL+PostGIS and Redis, started by `make test` (ops/services.sh).

A missing service fails the run: nothing here skips. Tests use their own
database (guardian_test) and Redis index (15), so they never touch what
`make run` serves.
"""

import asyncio
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import create_async_engine

from tests.servers import ServerProcess

TEST_ENV = {
    "GUARDIAN_DATABASE_URL": os.environ.get(
        "GUARDIAN_TEST_DATABASE_URL", "postgresql+asyncpg://guardian:guardian@127.0.0.1:5432/guardian_test"
    ),
    "GUARDIAN_REDIS_URL": os.environ.get("GUARDIAN_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
    "GUARDIAN_HELLO_TIMEOUT_S": "1",
    # Every test registers its users from 127.0.0.1: the per-address limit has its own tests.
    "GUARDIAN_REGISTER_BURST": "1000000",
    # Tests reconnect one token many times: the per-token connect limit has its own tests.
    "GUARDIAN_PHONE_CONNECT_BURST": "1000000",
    # Likewise their logins, per address and per username: the limits have their own tests.
    "GUARDIAN_LOGIN_ADDRESS_BURST": "1000000",
    "GUARDIAN_LOGIN_USERNAME_BURST": "1000000",
}
# Everything but the jurisdictions, which the session loads once (the Taipei demo).
TABLES = ("trip_events", "shares", "trips", "outbox", "audit_reads", "officer_positions", "alert_notes", "sos_repeats", "alerts", "pins", "contacts",
          "push_tokens", "trackers", "retired_trackers", "staff_sessions", "staff", "pings", "last_locations", "devices", "users")


@pytest.fixture(scope="session")
def test_env() -> dict[str, str]:
    return {**os.environ, **TEST_ENV}


@pytest.fixture(scope="session", autouse=True)
def migrated(test_env) -> None:
    subprocess.run([sys.executable, "-m", "server", "db", "upgrade"], env=test_env, check=True)
    subprocess.run([sys.executable, "-m", "server", "jurisdictions", "demo"], env=test_env, check=True,
                   stdout=subprocess.DEVNULL)


@pytest.fixture
async def engine():
    engine = create_async_engine(TEST_ENV["GUARDIAN_DATABASE_URL"], pool_size=2)
    yield engine
    await engine.dispose()


@pytest.fixture
async def redis():
    client = Redis.from_url(TEST_ENV["GUARDIAN_REDIS_URL"])
    yield client
    await client.aclose()


@pytest.fixture(autouse=True)
async def clean(request):
    """Every test starts from empty tables and an empty Redis index."""
    if "no_services" in request.keywords:
        yield
        return
    engine = create_async_engine(TEST_ENV["GUARDIAN_DATABASE_URL"], pool_size=1)
    # A module's servers keep running between its tests (their sweeps, retention making partitions):
    # TRUNCATE's locks can deadlock with them, and PostgreSQL then aborts one side; try again.
    for attempt in range(5):
        try:
            async with engine.begin() as connection:
                await connection.execute(sa.text(f"TRUNCATE {', '.join(TABLES)} CASCADE"))
            break
        except sa.exc.DBAPIError as error:
            if "deadlock" not in str(error) or attempt == 4:
                raise
            await asyncio.sleep(0.2)
    await engine.dispose()
    client = Redis.from_url(TEST_ENV["GUARDIAN_REDIS_URL"])
    await client.flushdb()
    await client.aclose()
    yield


@pytest.fixture(scope="session")
def server(test_env):
    """One real `guardian serve` on a free port, shared by the contract tests.

    It sweeps once at start and then not during the run, so the escalation tests (servers
    of their own, short settings) see their own processes take each step."""
    process = ServerProcess({**test_env, "GUARDIAN_SWEEP_INTERVAL_S": "86400"})
    process.start()
    yield process
    process.stop()


@pytest.fixture
def fresh_server(test_env):
    """A server of this test's own, for faults (SIGKILL) and special settings."""
    started: list[ServerProcess] = []

    def start(**settings: str) -> ServerProcess:
        process = ServerProcess({**test_env, **settings})
        process.start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
