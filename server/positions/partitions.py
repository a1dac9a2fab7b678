"""The history's partitions: one a day of device time (UTC), made ahead with pg_partman, dropped
whole once past the retention. Never a row-by-row delete of the history.

Why daily: a per-user read (a track, an alert's tracks) spans minutes to hours and is pruned to
the one or two partitions it covers either way; what the size of a partition decides is how long
past its retention a fix is kept (at most one partition's span: a day, where weekly partitions
would keep a 30-day history up to 37 days) and how many partitions the reads that cannot be pruned
visit: `history.acked_seq` at each connect, one index probe per partition, about 35 (30 days, 4
made ahead, the default), a few tens of microseconds each.

The default partition takes what falls outside the partitions made: fixes dated before the oldest
one (a phone's stale offline buffer, a clock far behind) and after the newest (a clock far ahead),
all of them marked suspect by the plausibility rules. Each run, `make_ahead` moves out of it the
rows of the days it is about to make (PostgreSQL cannot make a partition whose range has rows in
the default), and `retire_default` removes those whose device time or arrival is older than the
retention: the default holds a few odd fixes, not the history.

Locks: making a partition takes SHARE UPDATE EXCLUSIVE on `pings` (the ingest goes on) and
ACCESS EXCLUSIVE on the default; dropping one takes ACCESS EXCLUSIVE on `pings` for the time of a
catalogue change and of keeping the alerts' last fixes of that day. Both wait at most
LOCK_TIMEOUT behind a long reader, so that the ingest queued behind them never waits longer; a
run that gave up tries again at the next.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

log = logging.getLogger(__name__)

PARENT = "public.pings"
DEFAULT = "pings_default"
DAY = timedelta(days=1)
# Days made ahead of the clock: fixes dated up to then go to their own partitions.
PREMAKE_DAYS = 4
# How far ahead a fix may be dated and still be stored: well inside the days made ahead, so the
# default partition never holds rows of a day about to be made (moving them out of it at that
# moment locks it, and so every flush that holds a fix dated outside the partitions).
STORABLE_AHEAD = (PREMAKE_DAYS - 2) * DAY
LOCK_TIMEOUT = "2s"

_LIST = sa.text("""
    SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT' AS is_default,
           (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \\(''([^'']+)''\\)'))[1]::timestamptz AS lower,
           (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \\(''([^'']+)''\\)'))[1]::timestamptz AS upper
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'public.pings'::regclass
    ORDER BY upper NULLS FIRST""")


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    lower: datetime | None  # None: from the beginning of time (the table before migration 0009)
    upper: datetime | None  # None for the default
    is_default: bool


def start_of_day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


async def list_partitions(*, connection: AsyncConnection) -> list[Partition]:
    """Every partition of the history, oldest first, the default first of all."""
    return [Partition(row.name, row.lower, row.upper, row.is_default)
            for row in await connection.execute(_LIST)]


async def _limit_waits(connection: AsyncConnection) -> None:
    await connection.execute(sa.text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    # partman names and bounds partitions in the session's time zone: days are UTC days.
    await connection.execute(sa.text("SET LOCAL TIME ZONE 'UTC'"))


async def make_ahead(*, connection: AsyncConnection, now: datetime) -> list[datetime]:
    """Make the partitions of the days from `now`'s to PREMAKE_DAYS ahead that no partition
    covers yet, moving into them the default's rows of those days. Returns the days made. In the
    caller's transaction, which must commit it whole (rows are moved out and back in it)."""
    await _limit_waits(connection)
    existing = [part for part in await list_partitions(connection=connection) if not part.is_default]
    today = start_of_day(now.astimezone(timezone.utc))
    days = [day for day in (today + index * DAY for index in range(PREMAKE_DAYS + 1))
            if not any((part.lower is None or part.lower < day + DAY) and part.upper > day for part in existing)]
    if not days:
        return []
    # No fix enters the default while its rows of those days are moved out and the partitions made
    # (PostgreSQL refuses a partition whose range has rows in the default); other partitions go on.
    await connection.execute(sa.text(f"LOCK TABLE {DEFAULT} IN EXCLUSIVE MODE"))
    await connection.execute(
        sa.text(f"CREATE TEMP TABLE pings_moving ON COMMIT DROP AS WITH moved AS "
                f"(DELETE FROM {DEFAULT} WHERE device_ts >= :since AND device_ts < :until RETURNING *) "
                f"SELECT * FROM moved"),
        {"since": days[0], "until": days[-1] + DAY})
    await connection.execute(
        sa.text("SELECT partman.create_partition_time(:parent, :days, p_analyze := false)")
        .bindparams(sa.bindparam("days", type_=pg.ARRAY(sa.DateTime(timezone=True)))),
        {"parent": PARENT, "days": days})
    await connection.execute(sa.text("INSERT INTO pings SELECT * FROM pings_moving"))
    return days


async def expired(*, connection: AsyncConnection, before: datetime) -> list[Partition]:
    """The partitions (never the default) whose every fix is dated before `before`, oldest first."""
    return [part for part in await list_partitions(connection=connection)
            if not part.is_default and part.upper <= before]


async def lock_for_drop(*, connection: AsyncConnection) -> None:
    """ACCESS EXCLUSIVE on `pings` for the caller's transaction, waiting at most LOCK_TIMEOUT: no
    fix is stored or read until it ends (keep it to a catalogue change and a short copy). Taken
    before the partition's own lock, in the order the ingest takes them, so that neither waits
    on the other in a circle."""
    await _limit_waits(connection)
    await connection.execute(sa.text("LOCK TABLE pings IN ACCESS EXCLUSIVE MODE"))


async def drop(*, connection: AsyncConnection, partition: Partition) -> None:
    """Drop one partition with its rows, after `lock_for_drop` in the same transaction."""
    await connection.execute(sa.text(f'DROP TABLE "{partition.name}"'))


async def retire_default(*, connection: AsyncConnection, before: datetime) -> int:
    """Remove the default partition's rows dated, or received, before `before`. Run it in a
    REPEATABLE READ transaction after keeping what the alerts need of them, so that a row that
    arrives meanwhile is neither removed unkept nor kept twice."""
    removed = await connection.execute(
        sa.text(f"DELETE FROM {DEFAULT} WHERE device_ts < :before OR received_at < :before"), {"before": before})
    return removed.rowcount


async def oldest_in_default(*, connection: AsyncConnection) -> datetime | None:
    return await connection.scalar(sa.text(f"SELECT min(device_ts) FROM {DEFAULT}"))
