"""Faults under a stream of pings, with the invariants counted from PostgreSQL (tests/soak.py).

Every run: zero acknowledged pings lost, zero gaps below any welcome's `acked_seq`,
no position stored under two seqs, every phone's buffer drained. The PostgreSQL of
these tests is a cluster of their own (tests/pgcluster.py), so restarting it touches
no other test. GUARDIAN_SOAK_S sets how long each run streams (default 8 s, which
keeps the three runs near a minute); `make soak` runs them longer and prints the
figures (`pytest -s`).
"""

import asyncio
import os

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from tests import soak
from tests.pgcluster import Cluster
from tests.servers import create_user
from tests.stall import Stall, asyncpg_dsn

STREAM_S = float(os.environ.get("GUARDIAN_SOAK_S", "8"))
PHONES = int(os.environ.get("GUARDIAN_SOAK_PHONES", "20"))
RATE_HZ = 5.0
TERMINATE_INGEST = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
    "AND pid <> pg_backend_pid() AND query LIKE 'WITH inserted AS%INSERT INTO pings%'"
)


@pytest.fixture(scope="module")
def cluster(test_env):
    own = Cluster()
    try:
        own.create(test_env)
        yield own
    finally:
        own.destroy()


@pytest.fixture
async def cluster_engine(cluster):
    engine = create_async_engine(cluster.url, pool_size=1)
    yield engine
    await engine.dispose()


def streaming_server(fresh_server, cluster: Cluster):
    """A server on the private cluster whose rate limit never sheds these phones."""
    server = fresh_server(GUARDIAN_DATABASE_URL=cluster.url, GUARDIAN_RATE_PINGS_PER_S="1000",
                          GUARDIAN_RATE_BURST_PINGS="10000")
    return server, [create_user(server, name=f"Phone {i}") for i in range(PHONES)]


async def soak_run(scenario: str, fault, fault_every_s: float, *, server, users, engine) -> soak.Figures:
    figures = await soak.run(scenario, server=server, engine=engine, users=users, stream_s=STREAM_S,
                             rate_hz=RATE_HZ, fault=fault, fault_every_s=fault_every_s)
    print(figures)
    assert figures.faults, f"no fault landed: {figures}"
    assert (figures.lost, figures.gaps, figures.duplicates, figures.unsettled) == (0, 0, 0, 0), str(figures)
    return figures


async def test_pings_survive_postgresql_crashing_and_restarting(fresh_server, cluster, cluster_engine):
    server, users = streaming_server(fresh_server, cluster)

    async def crash() -> str:
        await asyncio.to_thread(cluster.crash_and_restart)
        return "postgresql restarted in immediate mode"

    figures = await soak_run("postgresql restart", crash, 3.0, server=server, users=users, engine=cluster_engine)
    assert figures.connects > figures.phones, "the phones were dropped and resent from acked_seq"


async def test_a_terminated_ingest_backend_costs_a_retry_and_drops_no_phone(fresh_server, cluster, cluster_engine):
    server, users = streaming_server(fresh_server, cluster)
    killer = await asyncpg.connect(asyncpg_dsn(cluster.url))

    async def terminate() -> str:
        hit = await killer.fetch(TERMINATE_INGEST)
        return "ingest backend terminated" if hit else "ingest backend not found"

    try:
        figures = await soak_run("ingest backend terminated", terminate, 1.0, server=server, users=users,
                                 engine=cluster_engine)
    finally:
        await killer.close()
    assert figures.faults.get("ingest backend terminated"), str(figures)
    assert "1011" not in figures.closes, f"a flush retried on a fresh connection fails no phone: {figures}"


async def test_pings_survive_a_flush_stalled_behind_a_lock_that_then_fails(fresh_server, cluster, cluster_engine):
    server, users = streaming_server(fresh_server, cluster)

    async def stall_then_fail() -> str:
        async with Stall(cluster.url) as stall:
            await stall.waiting_flush(timeout_s=3)
            await asyncio.sleep(1.5)  # the stall: every phone's pings pile up behind it
            await stall.fail_flush()
            try:
                await stall.fail_flush(timeout_s=1)  # and its retry
            except TimeoutError:
                return "flush stalled, then failed once"
        return "flush stalled, then failed twice"

    figures = await soak_run("flush stalled then failed", stall_then_fail, 1.0, server=server, users=users,
                             engine=cluster_engine)
    assert figures.faults.get("flush stalled, then failed twice"), str(figures)
    assert figures.connects > figures.phones, "the phones of the failed flush resent from acked_seq"
