"""The ingest's statement (`history.store`, one array per column read with `unnest`), as a property
(issue 12 item 4 changed its shape): whatever flushes of retries, resent seqs under another device
time, suspect fixes, missing measures and an erased user it is given, it stores and moves exactly
what the rules say, against a model of them in Python:

- a row of an erased user is never stored; nor one whose (device, seq, device time) is stored (a
  retry, from an earlier flush or earlier in the same one), nor one marked to recheck whose
  (device, seq) an earlier flush stored under any device time (any partition);
- a user's last location is their newest plausible stored fix, only ever moved forward, and each
  flush returns exactly the users whose last location it moved, with that fix.
"""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import create_async_engine

from geo.fix import Fix
from server.core import db
from server.core.tables import users
from server.positions import history
from tests.conftest import TEST_ENV

# Device times over several partitions: yesterday (or the legacy partition), today, tomorrow.
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
USERS = 3  # the last one is erased when the example says so

row = st.tuples(
    st.integers(0, USERS - 1),  # user (one device each)
    st.integers(0, 5),  # seq
    st.integers(0, 2),  # which device time: the same (seq, variant) is an exact retry
    st.booleans(),  # suspect
    st.booleans(),  # recheck
    st.one_of(st.none(), st.floats(0, 5000)),  # accuracy
)
flushes = st.lists(st.lists(row, min_size=1, max_size=8), min_size=1, max_size=4)


def device_ts(seq: int, variant: int) -> datetime:
    return BASE + timedelta(days=variant, seconds=seq)


def model(plan, erased: bool):
    """What each flush stores and moves, by the rules above."""
    stored: set[tuple[int, int, datetime]] = set()
    last: dict[int, datetime] = {}
    moved_per_flush = []
    for flush in plan:
        before = {(user, seq) for user, seq, _ in stored}
        newest: dict[int, datetime] = {}
        for user, seq, variant, suspect, recheck, _ in flush:
            ts = device_ts(seq, variant)
            if (erased and user == USERS - 1) or (user, seq, ts) in stored or (recheck and (user, seq) in before):
                continue
            stored.add((user, seq, ts))
            if not suspect and ts > newest.get(user, datetime.min.replace(tzinfo=UTC)):
                newest[user] = ts
        moved = {}
        for user, ts in newest.items():
            if user not in last or last[user] < ts:
                last[user] = moved[user] = ts
        moved_per_flush.append(moved)
    return stored, last, moved_per_flush


async def check(plan, erased: bool) -> None:
    engine = create_async_engine(TEST_ENV["GUARDIAN_DATABASE_URL"], pool_size=1)
    try:
        ids = [(uuid.uuid4(), uuid.uuid4()) for _ in range(USERS)]
        async with engine.begin() as connection:
            await connection.execute(sa.text("TRUNCATE pings, last_locations"))
            await connection.execute(users.insert(), [
                {"user_id": user_id, "name": "Store", "phone": "+886900000000",
                 "erased_at": datetime.now(UTC) if erased and index == USERS - 1 else None}
                for index, (user_id, _) in enumerate(ids)])
        expected_stored, expected_last, expected_moved = model(plan, erased)
        for flush, moved_expected in zip(plan, expected_moved):
            rows = [history.NewFix(device_id=ids[user][1], user_id=ids[user][0], seq=seq,
                                   fix=Fix(lat=25.0 + seq * 1e-3 + variant * 1e-5, lon=121.5, ts=device_ts(seq, variant),
                                           accuracy_m=acc, battery_pct=None if acc is None else 50.0),
                                   received_at=datetime.now(UTC), suspect=["teleport"] if suspect else None,
                                   recheck=recheck)
                    for user, seq, variant, suspect, recheck, acc in flush]
            async with db.autocommit(engine) as connection:
                moved = await history.store(connection=connection, rows=rows)
            by_user = {user_id: index for index, (user_id, _) in enumerate(ids)}
            assert {by_user[user_id]: fix.ts for user_id, fix in moved} == moved_expected
            assert len(moved) == len(moved_expected)
            for _, fix in moved:  # the fix of that device time, as sent
                offset = fix.ts - BASE
                assert (fix.lat, fix.lon) == (25.0 + offset.seconds * 1e-3 + offset.days * 1e-5, 121.5)
        async with engine.connect() as connection:
            got = {(row.user_id, row.seq, row.device_ts) for row in await connection.execute(
                sa.text("SELECT user_id, seq, device_ts FROM pings"))}
            last = {row.user_id: row.device_ts for row in await connection.execute(
                sa.text("SELECT user_id, device_ts FROM last_locations"))}
        assert got == {(ids[user][0], seq, ts) for user, seq, ts in expected_stored}
        assert last == {ids[user][0]: ts for user, ts in expected_last.items()}
    finally:
        await engine.dispose()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=flushes, erased=st.booleans())
def test_the_ingest_statement_stores_and_moves_exactly_what_the_rules_say(plan, erased):
    asyncio.run(check(plan, erased))
