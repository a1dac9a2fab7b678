"""The ping history and last locations in PostgreSQL: the system of record for positions."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from geo.fix import Fix
from server.core.tables import last_locations, pings


@dataclass(slots=True)
class StoredFix:
    """A stored fix read back, with server time and suspicion codes (no seq for a last location)."""

    seq: int | None
    fix: Fix
    received_at: datetime
    suspect: list[str] | None


# One flush's pings travel as one array per column, which asyncpg encodes in binary (in C, straight
# from the Python values, no SQLAlchemy type processing: `exec_driver_sql`) and PostgreSQL reads
# with `unnest`, without parsing text: a fifth less of PostgreSQL's CPU per stored ping than the
# JSON array of rows it replaced, at the same cost to the event loop, in the same one round trip
# (issue 12, `python -m load storecost`; COPY into a stage costs PostgreSQL as much, takes four
# round trips and its own transaction).
#
# Only a user not erased: the lock (FOR KEY SHARE) waits for an erasure holding the user's row and
# then sees it erased, so a flush racing the erasure resurrects no fix (nor the last location).
# Rows of an erased user are dropped like duplicates: the phone is being closed. A row marked to
# recheck (`NewFix.recheck`) is first looked for in every partition's key: too dear for every ping.
# No conflict target: the key is (device_id, seq) on a database before migration 0009 and
# (device_id, seq, device_ts) after it (the partition key must be in it); a retried ping repeats
# both its seq and its device time, so either key stores it once.
STORE = """WITH inserted AS (
  INSERT INTO pings (device_id, user_id, seq, device_ts, received_at, location, accuracy_m, altitude_m, speed_mps,
                     heading_deg, battery_pct, suspect)
  SELECT row.device_id, row.user_id, row.seq, row.device_ts, row.received_at,
         ST_SetSRID(ST_MakePoint(row.lon, row.lat), 4326), row.accuracy_m, row.altitude_m, row.speed_mps,
         row.heading_deg, row.battery_pct, string_to_array(row.suspect, ',')
  FROM unnest($1::uuid[], $2::uuid[], $3::int8[], $4::timestamptz[], $5::timestamptz[], $6::float8[],
              $7::float8[], $8::float8[], $9::float8[], $10::float8[], $11::float8[], $12::float8[], $13::text[],
              $14::bool[])
    AS row (device_id, user_id, seq, device_ts, received_at, lat, lon, accuracy_m, altitude_m, speed_mps,
            heading_deg, battery_pct, suspect, recheck)
  WHERE EXISTS (SELECT 1 FROM users WHERE users.user_id = row.user_id AND users.erased_at IS NULL FOR KEY SHARE)
    AND CASE WHEN row.recheck
             THEN NOT EXISTS (SELECT 1 FROM pings WHERE pings.device_id = row.device_id AND pings.seq = row.seq)
             ELSE true END
  ON CONFLICT DO NOTHING
  RETURNING device_id, user_id, device_ts, received_at, location, accuracy_m, speed_mps, heading_deg, battery_pct,
            suspect
)
INSERT INTO last_locations (user_id, device_id, device_ts, received_at, location, accuracy_m, speed_mps, heading_deg,
                            battery_pct)
SELECT DISTINCT ON (user_id) user_id, device_id, device_ts, received_at, location, accuracy_m, speed_mps, heading_deg,
       battery_pct
FROM inserted WHERE suspect IS NULL ORDER BY user_id, device_ts DESC
ON CONFLICT (user_id) DO UPDATE SET device_id = excluded.device_id, device_ts = excluded.device_ts,
  received_at = excluded.received_at, location = excluded.location, accuracy_m = excluded.accuracy_m,
  speed_mps = excluded.speed_mps, heading_deg = excluded.heading_deg, battery_pct = excluded.battery_pct
WHERE last_locations.device_ts < excluded.device_ts
RETURNING last_locations.user_id, ST_Y(last_locations.location) AS lat, ST_X(last_locations.location) AS lon,
          last_locations.accuracy_m, last_locations.device_ts
"""


@dataclass(slots=True)
class NewFix:
    """One ping ready to be stored."""

    device_id: uuid.UUID
    user_id: uuid.UUID
    seq: int
    fix: Fix
    received_at: datetime
    suspect: list[str] | None
    # The seq is not above every seq of the device stored or taken before: check that no
    # partition holds it (the key has the device time in it, so the insert's conflict cannot).
    recheck: bool = False


async def store(*, connection: AsyncConnection, rows: Sequence[NewFix]) -> list[tuple[uuid.UUID, Fix]]:
    """Insert the pings (a retry, the same (device, seq, device time), is skipped) and move last
    locations forward.

    One statement: on an autocommit connection it is its own transaction, committed when
    this returns. Returns each user whose last location moved, with that fix, so the
    caller can copy exactly those to Redis.
    """
    columns = tuple(map(list, zip(*(
        (row.device_id, row.user_id, row.seq, row.fix.ts, row.received_at, row.fix.lat, row.fix.lon,
         row.fix.accuracy_m, row.fix.altitude_m, row.fix.speed_mps, row.fix.heading_deg, row.fix.battery_pct,
         ",".join(row.suspect) if row.suspect else None, row.recheck)
        for row in rows)))) or ([],) * 14
    result = await connection.exec_driver_sql(STORE, columns)
    return [(user_id, Fix(lat=lat, lon=lon, ts=device_ts, accuracy_m=accuracy_m))
            for user_id, lat, lon, accuracy_m, device_ts in result]


async def acked_seq(*, connection: AsyncConnection, device_id: uuid.UUID) -> int:
    """The highest seq stored for this device, -1 if none: where the device resumes.

    Every seq below it is stored or was answered with an error, because the ingest commits
    a device's pings in arrival order and, once a flush of them failed, stores nothing more
    of that stream (server/phones/ingest.py). The end of the contiguous stored prefix would not
    need that, but would cost a scan of the device's pings at every connect; this is one
    index lookup on the (device_id, seq, device_ts) key in each partition of the history (about
    35 with daily partitions: server/positions/partitions.py)."""
    value = await connection.scalar(sa.select(sa.func.max(pings.c.seq)).where(pings.c.device_id == device_id))
    return -1 if value is None else value


def _fix_columns(table: sa.Table) -> list:
    return [
        sa.func.ST_Y(table.c.location).label("lat"),
        sa.func.ST_X(table.c.location).label("lon"),
        table.c.device_ts,
        table.c.received_at,
        table.c.accuracy_m,
        table.c.speed_mps,
        table.c.heading_deg,
        table.c.battery_pct,
    ]


def _to_fix(row, *, altitude_m: float | None = None) -> Fix:
    return Fix(
        lat=row.lat,
        lon=row.lon,
        ts=row.device_ts,
        accuracy_m=row.accuracy_m,
        altitude_m=altitude_m,
        speed_mps=row.speed_mps,
        heading_deg=row.heading_deg,
        battery_pct=row.battery_pct,
    )


async def last_location(*, connection: AsyncConnection, user_id: uuid.UUID) -> StoredFix | None:
    """The user's last plausible fix, or None."""
    row = (
        await connection.execute(sa.select(*_fix_columns(last_locations)).where(last_locations.c.user_id == user_id))
    ).first()
    return None if row is None else StoredFix(seq=None, fix=_to_fix(row), received_at=row.received_at, suspect=None)


async def track(
    *, connection: AsyncConnection, user_id: uuid.UUID, since: datetime, until: datetime, limit: int
) -> list[StoredFix]:
    """The user's fixes with device time in [since, until], oldest first, at most `limit`."""
    rows = await connection.execute(
        sa.select(pings.c.seq, pings.c.altitude_m, pings.c.suspect, *_fix_columns(pings))
        .where(pings.c.user_id == user_id, pings.c.device_ts >= since, pings.c.device_ts <= until)
        .order_by(pings.c.device_ts, pings.c.seq)
        .limit(limit)
    )
    return [
        StoredFix(seq=row.seq, fix=_to_fix(row, altitude_m=row.altitude_m), received_at=row.received_at,
                  suspect=row.suspect)
        for row in rows
    ]


async def all_last_locations(*, connection: AsyncConnection, chunk_rows: int = 5000):
    """Every user's last location, streamed in chunks (for rebuilding Redis)."""
    result = await connection.stream(sa.select(last_locations.c.user_id, *_fix_columns(last_locations)))
    async for chunk in result.partitions(chunk_rows):
        yield [(row.user_id, _to_fix(row)) for row in chunk]


async def stream_track(*, connection: AsyncConnection, user_id: uuid.UUID, chunk_rows: int):
    """Every fix of the user, oldest first, in lists of at most `chunk_rows` from a server-side
    cursor (the caller's transaction): a year of fixes never sits in memory at once."""
    result = await connection.stream(
        sa.select(pings.c.seq, pings.c.altitude_m, pings.c.suspect, *_fix_columns(pings))
        .where(pings.c.user_id == user_id).order_by(pings.c.device_ts, pings.c.seq)
        .execution_options(yield_per=chunk_rows))
    async for chunk in result.partitions(chunk_rows):
        yield [StoredFix(seq=row.seq, fix=_to_fix(row, altitude_m=row.altitude_m), received_at=row.received_at,
                         suspect=row.suspect) for row in chunk]
