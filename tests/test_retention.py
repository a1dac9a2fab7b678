"""Retention over many daily partitions with a controllable clock (issue 11 item 3): the
partitions past the retention dropped whole, the others whole to the row, the alerts' tracks
kept and shown by the consoles' view, the default partition's odd fixes handled, one run at a
time across processes, and the ingest going on through a drop."""

import asyncio
import subprocess
import sys
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from geo.fix import Fix
from server.alerts import record, retention, view
from server.core import db
from server.core.tables import alert_fixes, alert_notes, alerts, pings, trips, users
from server.positions import history, partitions
from tests.conftest import TEST_ENV

DAY = timedelta(days=1)
FIXES_PER_DAY = 6
# Days far enough ahead of the real clock that no partition the migration made (nor the real
# clock's own) covers them: the test's clock runs there.
BASE = partitions.start_of_day(datetime.now(timezone.utc)) + 10 * DAY


def day(index: int) -> datetime:
    return BASE + index * DAY


@pytest.fixture(autouse=True)
async def layout(engine):
    """Puts back the partitions the real clock needs once the test's clock has moved them."""
    yield
    async with engine.begin() as connection:
        await connection.execute(sa.text("TRUNCATE pings"))
        for part in await partitions.list_partitions(connection=connection):
            if not part.is_default and part.lower is not None and part.lower >= BASE:
                await partitions.drop(connection=connection, partition=part)
    async with engine.begin() as connection:
        await partitions.make_ahead(connection=connection, now=datetime.now(timezone.utc))


async def add_user(engine) -> uuid.UUID:
    user_id = uuid.uuid4()
    async with engine.begin() as connection:
        await connection.execute(users.insert().values(user_id=user_id, name="Retention", phone="+886900000000"))
    return user_id


async def store(engine, *, user_id, device_id, fixes: list[tuple[int, datetime]], received_at: datetime | None = None,
                suspect: list[str] | None = None) -> None:
    """Through the ingest's own statement; received as taken unless `received_at` says otherwise."""
    rows = [history.NewFix(device_id=device_id, user_id=user_id, seq=seq,
                           fix=Fix(lat=25.03 + seq * 1e-5, lon=121.56, ts=ts, accuracy_m=5.0),
                           received_at=received_at or ts, suspect=suspect)
            for seq, ts in fixes]
    async with db.autocommit(engine) as connection:
        await history.store(connection=connection, rows=rows)


async def add_alert(engine, *, user_id, opened_at: datetime, ended_at: datetime, trip_started_at=None) -> uuid.UUID:
    alert_id, trip_id = uuid.uuid4(), uuid.uuid4() if trip_started_at else None
    async with engine.begin() as connection:
        await connection.execute(alerts.insert().values(
            alert_id=alert_id, sos_id=uuid.uuid4(), user_id=user_id, status="resolved", phone_status="resolved",
            opened_at=opened_at, updated_at=ended_at, ended_at=ended_at, quality="unknown", visible_precincts=[],
            escalate_again_after_s=120.0, trip_id=trip_id))
        if trip_id:
            await connection.execute(trips.insert().values(
                trip_id=trip_id, user_id=user_id, kind="walk", status="alert", started_at=trip_started_at,
                ended_at=ended_at, alert_id=alert_id))
        await connection.execute(alert_notes.insert().values(alert_id=alert_id, author="dispatcher", text="seen"))
    return alert_id


async def retire(engine, now: datetime, *, alert_retention_days: int = 3650) -> retention.Retired:
    return await retention.retire(engine=engine, now=now, history_retention_days=30,
                                  alert_retention_days=alert_retention_days)


async def shown(engine, alert_id) -> dict:
    async with engine.connect() as connection:
        (alert,) = await view.load(connection=connection, track_points=200, alert_ids=[alert_id])
    return alert.alert


async def count(engine, query) -> int:
    async with engine.connect() as connection:
        return await connection.scalar(query)


def partition_name(moment: datetime) -> str:
    return f"pings_p{moment:%Y_%m_%d}"


async def test_sixty_days_of_history_keep_the_last_thirty_whole_and_the_alert_tracks(engine):
    user_id, device_id = await add_user(engine), uuid.uuid4()
    # An alert on day 20 (its partition dropped by the end) with a trip checked in before it,
    # and one on day 2, past an alert retention of 50 days by the end.
    kept_alert = await add_alert(engine, user_id=user_id, opened_at=day(20) + timedelta(hours=3),
                                 ended_at=day(20) + timedelta(hours=4), trip_started_at=day(20) + timedelta(hours=1))
    old_alert = await add_alert(engine, user_id=user_id, opened_at=day(2) + timedelta(hours=3),
                                ended_at=day(2) + timedelta(hours=4))
    per_day: Counter[str] = Counter()
    seq = 0
    before = None
    for index in range(60):
        now = day(index) + timedelta(hours=12)
        await retire(engine, now, alert_retention_days=50)
        moments = [day(index) + timedelta(hours=1, minutes=40 * n) for n in range(FIXES_PER_DAY)]
        await store(engine, user_id=user_id, device_id=device_id,
                    fixes=[(seq + n, moment) for n, moment in enumerate(moments)])
        seq += FIXES_PER_DAY
        per_day[partition_name(day(index))] += FIXES_PER_DAY
        if index == 25:
            # Stale and far-future fixes: no partition covers them (the one from before the
            # migration is gone by now), so they go to the default.
            await store(engine, user_id=user_id, device_id=device_id, suspect=["stale"],
                        fixes=[(10_000, day(-100)), (10_001, day(200))], received_at=now)
            assert await count(engine, sa.text("SELECT count(*) FROM pings_default")) == 2
        if index == 26:
            # The stale one is dated past the retention; the future one waits for its arrival to be.
            assert await count(engine, sa.text("SELECT count(*) FROM pings_default")) == 1
        if index == 40:
            # Dated past the partitions made so far: in the default until its day's partition is made.
            await store(engine, user_id=user_id, device_id=device_id, suspect=["future"],
                        fixes=[(10_002, day(48) + timedelta(hours=23))], received_at=now)
            per_day[partition_name(day(48))] += 1
        if index == 20:
            before = await shown(engine, kept_alert)
    assert len(before["track"]) == 2 and len(before["trip"]["track"]) == 5

    done = await retire(engine, day(60) + timedelta(hours=12), alert_retention_days=50)

    assert done.ran
    async with engine.connect() as connection:
        names = {part.name for part in await partitions.list_partitions(connection=connection)}
        for index in range(60):
            name = partition_name(day(index))
            if index < 30:
                assert name not in names
            else:
                assert await connection.scalar(sa.text(f"SELECT count(*) FROM {name}")) == per_day[name], name
        assert "pings_legacy" not in names
        assert await connection.scalar(sa.text("SELECT count(*) FROM pings_default")) == 0
        assert await connection.scalar(sa.select(sa.func.count()).select_from(pings)) == sum(
            per_day[partition_name(day(index))] for index in range(30, 60))
        assert await connection.scalar(
            sa.select(sa.func.count()).where(alerts.c.alert_id == old_alert)) == 0
        assert await connection.scalar(
            sa.select(sa.func.count()).where(alert_notes.c.alert_id == old_alert)) == 0
        assert await connection.scalar(
            sa.select(sa.func.count()).where(alert_fixes.c.alert_id == old_alert)) == 0
    after = await shown(engine, kept_alert)
    assert after["track"] == before["track"]
    assert after["trip"]["track"] == before["trip"]["track"]
    assert [note["text"] for note in after["notes"]] == ["seen"]


async def test_keeping_one_users_tracks_copies_only_that_users_alerts(engine):
    first, second = await add_user(engine), await add_user(engine)
    alert_ids = {}
    for user_id in (first, second):
        alert_ids[user_id] = await add_alert(engine, user_id=user_id, opened_at=day(1), ended_at=day(1) + DAY / 24)
        await store(engine, user_id=user_id, device_id=uuid.uuid4(),
                    fixes=[(n, day(1) + timedelta(minutes=10 * n)) for n in range(4)])
    async with engine.begin() as connection:
        copied = await record.keep_tracks(connection=connection, user_id=first)
        again = await record.keep_tracks(connection=connection, user_id=first)
    assert (copied, again) == (4, 0)
    assert await count(engine, sa.select(sa.func.count()).where(alert_fixes.c.alert_id == alert_ids[first])) == 4
    assert await count(engine, sa.select(sa.func.count()).where(alert_fixes.c.alert_id == alert_ids[second])) == 0


async def test_a_second_process_skips_the_run_while_one_holds_it(engine):
    await retire(engine, day(0))
    user_id = await add_user(engine)
    await store(engine, user_id=user_id, device_id=uuid.uuid4(), fixes=[(n, day(0) + timedelta(hours=n)) for n in range(3)])
    async with engine.connect() as holder:
        assert await holder.scalar(sa.select(sa.func.pg_try_advisory_lock(retention.LOCK_KEY)))
        skipped = await retire(engine, day(40))
        cli = subprocess.run([sys.executable, "-m", "server", "history", "retire", "--now", day(40).isoformat()],
                             env={**TEST_ENV, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60)
        await holder.execute(sa.select(sa.func.pg_advisory_unlock(retention.LOCK_KEY)))
        await holder.commit()
    assert not skipped.ran and cli.returncode == 1 and "another process" in cli.stdout
    assert await count(engine, sa.select(sa.func.count()).select_from(pings)) == 3

    other = create_async_engine(TEST_ENV["GUARDIAN_DATABASE_URL"], pool_size=1)
    try:
        runs = await asyncio.gather(retire(engine, day(40)), retire(other, day(40)))
    finally:
        await other.dispose()
    dropped = [name for run in runs for name in run.dropped]
    assert partition_name(day(0)) in dropped and len(dropped) == len(set(dropped))
    assert await count(engine, sa.select(sa.func.count()).select_from(pings)) == 0


async def test_pings_stored_during_a_drop_are_stored_once_and_none_lost(engine):
    user_id, device_id = await add_user(engine), uuid.uuid4()
    for index in range(0, 36, 4):
        await retire(engine, day(index))
    for index in range(10):
        await store(engine, user_id=user_id, device_id=device_id, fixes=[(index, day(index) + timedelta(hours=1))])
    ingest = create_async_engine(TEST_ENV["GUARDIAN_DATABASE_URL"], pool_size=1)
    sent: list[tuple[int, datetime]] = []

    async def keep_storing(stop: asyncio.Event) -> None:
        seq = 1000
        for _ in range(2000):  # bounded: about as long as the drops take, at most
            batch = [(seq + n, day(35) + timedelta(seconds=seq + n)) for n in range(20)]
            await store(ingest, user_id=user_id, device_id=device_id, fixes=batch, received_at=day(35))
            sent.extend(batch)
            seq += 20
            if stop.is_set():
                return

    stop = asyncio.Event()
    storing = asyncio.create_task(keep_storing(stop))
    try:
        done = await retire(engine, day(40) + timedelta(hours=12))
    finally:
        stop.set()
        await storing
    try:
        assert len(done.dropped) >= 8
        await store(ingest, user_id=user_id, device_id=device_id, fixes=sent, received_at=day(36))  # a retry of all
    finally:
        await ingest.dispose()
    stored = await count(engine, sa.select(sa.func.count(sa.distinct(pings.c.seq))).where(pings.c.seq >= 1000))
    rows = await count(engine, sa.select(sa.func.count()).where(pings.c.seq >= 1000))
    assert stored == rows == len(sent) > 0
    assert await count(engine, sa.select(sa.func.count()).where(pings.c.seq < 1000)) == 0


async def test_a_server_drops_the_history_past_its_retention_as_it_starts(engine, fresh_server):
    real_now = datetime.now(timezone.utc)
    await retire(engine, real_now + 100 * DAY)  # no partition left that covers the real past
    old_day = partitions.start_of_day(real_now) - 40 * DAY
    async with engine.begin() as connection:
        await partitions.make_ahead(connection=connection, now=old_day)
    user_id, device_id = await add_user(engine), uuid.uuid4()
    await store(engine, user_id=user_id, device_id=device_id, fixes=[(n, old_day + timedelta(hours=n)) for n in range(3)])
    await store(engine, user_id=user_id, device_id=device_id, fixes=[(3, real_now)])  # no partition yet: the default

    fresh_server()

    async with engine.connect() as connection:
        for _ in range(100):
            names = {part.name for part in await partitions.list_partitions(connection=connection)}
            await connection.commit()
            if partition_name(old_day) not in names and partition_name(real_now) in names:
                break
            await asyncio.sleep(0.1)
        assert partition_name(old_day) not in names and partition_name(real_now) in names
        assert (await connection.execute(sa.select(pings.c.seq))).scalars().all() == [3]
        assert await connection.scalar(sa.text(f"SELECT count(*) FROM {partition_name(real_now)}")) == 1
