"""The history's indexes (issue 12 item 4): only its key and (user_id, device_ts), on every
partition, those made later too; and every way the code reads the history is answered by one of
them, never by a scan of a whole partition (with sequential scans priced out, a query no index
can serve still shows one)."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from geo.fix import Fix
from server.core import db
from server.core.tables import users
from server.positions import history, partitions

DAY = timedelta(days=1)
KEPT = {"pkey", "user_ts"}


def kind(index_name: str, partition: str) -> str:
    """pings_p2026_12_03_user_id_device_ts_idx and pings_legacy_user_ts_idx are both `user_ts`."""
    rest = index_name.removeprefix(partition + "_")
    return "user_ts" if rest in ("user_id_device_ts_idx", "user_ts_idx") else rest


@pytest.fixture(autouse=True)
async def layout(engine):
    yield
    async with engine.begin() as connection:
        await connection.execute(sa.text("TRUNCATE pings"))
        for part in await partitions.list_partitions(connection=connection):
            if not part.is_default and part.lower is not None and part.lower >= far_day(0):
                await partitions.drop(connection=connection, partition=part)


def far_day(index: int) -> datetime:
    return partitions.start_of_day(datetime.now(UTC)) + (20 + index) * DAY


async def test_every_partition_has_only_the_key_and_the_user_time_index_those_made_later_too(engine):
    async with engine.begin() as connection:
        await partitions.make_ahead(connection=connection, now=far_day(0))
    async with engine.connect() as connection:
        parts = await partitions.list_partitions(connection=connection)
        assert any(part.lower == far_day(0) for part in parts)  # one made after the migration
        for part in parts:
            names = (await connection.execute(sa.text("SELECT indexname FROM pg_indexes WHERE tablename = :t"),
                                              {"t": part.name})).scalars().all()
            assert {kind(name, part.name) for name in names} == KEPT, part.name
        parent = (await connection.execute(sa.text(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = 'public.pings'::regclass"))).scalars().all()
        assert set(parent) == {"pings_pkey", "pings_user_ts_idx"}


# Each shape of read of `pings` in the code: tracks of a user in a window (the console's, the
# alert record's, `/v1/me/track`, the trip share), a user's whole history (the export, the
# erasure), the highest seq of a device (`acked_seq`), the recheck of a resent (device, seq).
READS = {
    "track window": "SELECT * FROM pings WHERE user_id = :user AND device_ts >= :since AND device_ts <= :until "
                    "AND received_at <= :until AND suspect IS NULL ORDER BY device_ts DESC LIMIT 200",
    "whole history": "SELECT * FROM pings WHERE user_id = :user ORDER BY device_ts, seq",
    "erasure": "DELETE FROM pings WHERE user_id = :user",
    "acked_seq": "SELECT max(seq) FROM pings WHERE device_id = :device",
    "recheck": "SELECT 1 FROM pings WHERE device_id = :device AND seq = :seq",
}


async def test_every_read_of_the_history_is_answered_by_an_index(engine):
    user_id, device_id = uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    async with engine.begin() as connection:
        await connection.execute(users.insert().values(user_id=user_id, name="Indexes", phone="+886900000000"))
    rows = [history.NewFix(device_id=device_id, user_id=user_id, seq=seq,
                           fix=Fix(lat=25.03, lon=121.56 + seq * 1e-5, ts=now - timedelta(hours=seq), accuracy_m=5.0),
                           received_at=now, suspect=None) for seq in range(100)]
    async with db.autocommit(engine) as connection:
        await history.store(connection=connection, rows=rows)
    async with engine.begin() as connection:
        await connection.execute(sa.text("SET LOCAL enable_seqscan = off"))
        for name, query in READS.items():
            plan = "\n".join((await connection.execute(sa.text("EXPLAIN " + query), {
                "user": user_id, "device": device_id, "seq": 7, "since": now - DAY, "until": now})).scalars())
            assert "Seq Scan" not in plan, f"{name}:\n{plan}"
            assert "Index" in plan, f"{name}:\n{plan}"
