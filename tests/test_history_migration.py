"""Migration 0009 on a database holding history, as a running deployment applies it: the pings
keep coming (and being retried) while it runs, nothing is lost or stored twice, every fix is
readable after it, and the downgrade gives the same history back. On a PostgreSQL of the test's
own (tests/pgcluster.py), so the shared one's schema is never taken back."""

import asyncio
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from geo.fix import Fix
from server.core import db
from server.positions import history, partitions
from tests.pgcluster import Cluster

NOW = datetime.now(timezone.utc)


@pytest.fixture
def cluster(test_env):
    own = Cluster()
    try:
        own.create(test_env, revision="0009")
        yield own
    finally:
        own.destroy()


def fixes(user_id, device_id, seqs_and_times, *, suspect=None) -> list[history.NewFix]:
    return [history.NewFix(device_id=device_id, user_id=user_id, seq=seq,
                           fix=Fix(lat=25.0 + (seq % 1000) * 1e-5, lon=121.5, ts=ts, accuracy_m=8.0),
                           received_at=NOW, suspect=suspect)
            for seq, ts in seqs_and_times]


async def store(engine, rows) -> None:
    async with db.autocommit(engine) as connection:
        await history.store(connection=connection, rows=rows)


def migrate(cluster, test_env, *command: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "server", "db", *command],
                            env={**test_env, "GUARDIAN_DATABASE_URL": cluster.url})


async def test_the_history_is_partitioned_while_pings_and_their_retries_keep_coming(cluster, test_env):
    engine = create_async_engine(cluster.url, pool_size=2)
    user_id, device_id = uuid.uuid4(), uuid.uuid4()
    try:
        async with engine.begin() as connection:
            await connection.execute(sa.text("INSERT INTO users (user_id, name, phone) VALUES (:id, 'M', '+1')"),
                                     {"id": user_id})
        # Ten days of history, and two phones' clocks far ahead (suspect, stored all the same).
        old = [(seq, NOW - timedelta(days=10) + timedelta(seconds=40 * seq)) for seq in range(20_000)]
        for start in range(0, len(old), 2000):
            await store(engine, fixes(user_id, device_id, old[start:start + 2000]))
        ahead = [(50_000, NOW + timedelta(days=3)), (50_001, NOW + timedelta(days=400))]
        await store(engine, fixes(user_id, device_id, ahead, suspect=["future"]))
        sent = old + ahead

        upgrade = migrate(cluster, test_env, "upgrade")
        seq, batches = 100_000, 0
        while upgrade.poll() is None and batches < 5000:
            batch = [(seq + n, NOW - timedelta(minutes=5) + timedelta(milliseconds=seq + n)) for n in range(10)]
            await store(engine, fixes(user_id, device_id, batch))
            await store(engine, fixes(user_id, device_id, batch))  # its retry
            sent += batch
            seq, batches = seq + 10, batches + 1
            await asyncio.sleep(0.005)
        assert upgrade.wait(timeout=120) == 0
        assert batches > 0

        async with engine.connect() as connection:
            assert await connection.scalar(sa.text("SELECT version_num FROM alembic_version")) == "0012"
            assert await connection.scalar(sa.text("SELECT relkind::text FROM pg_class WHERE relname = 'pings'")) == "p"
            names = {part.name: part for part in await partitions.list_partitions(connection=connection)}
            assert "pings_legacy" in names and "pings_default" in names
            rows = await connection.scalar(sa.text("SELECT count(*) FROM pings"))
            keys = await connection.scalar(sa.text("SELECT count(DISTINCT (device_id, seq)) FROM pings"))
            assert rows == keys == len(sent)
            assert await connection.scalar(
                sa.text("SELECT count(*) FROM pings_default WHERE seq = 50001")) == 1
            read = await history.track(connection=connection, user_id=user_id, since=NOW - timedelta(days=11),
                                       until=NOW + timedelta(days=500), limit=100_000)
            assert [stored.seq for stored in read][:20_000] == list(range(20_000))
            assert {stored.seq for stored in read} == {seq for seq, _ in sent}
            assert await history.acked_seq(connection=connection, device_id=device_id) == max(s for s, _ in sent)

        await store(engine, fixes(user_id, device_id, sent))  # every ping retried after the upgrade
        await store(engine, fixes(user_id, device_id, [(900_000, NOW)]))
        async with engine.connect() as connection:
            assert await connection.scalar(sa.text("SELECT count(*) FROM pings")) == len(sent) + 1

        assert migrate(cluster, test_env, "downgrade", "0009").wait(timeout=120) == 0
        async with engine.connect() as connection:
            assert await connection.scalar(sa.text("SELECT relkind::text FROM pg_class WHERE relname = 'pings'")) == "r"
            assert await connection.scalar(sa.text("SELECT count(*) FROM pings")) == len(sent) + 1
        await store(engine, fixes(user_id, device_id, [(900_000, NOW), (900_001, NOW)]))
        assert migrate(cluster, test_env, "upgrade").wait(timeout=120) == 0
        async with engine.connect() as connection:
            assert await connection.scalar(sa.text("SELECT count(*) FROM pings")) == len(sent) + 2
    finally:
        await engine.dispose()
