"""The ping history and last locations in PostgreSQL: the system of record for positions."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from geo.fix import Fix
from server.core.tables import last_locations, pings, point, users


@dataclass(slots=True)
class StoredFix:
    """A stored fix read back, with server time and suspicion codes (no seq for a last location)."""

    seq: int | None
    fix: Fix
    received_at: datetime
    suspect: list[str] | None


# One flush's pings travel as one JSON array of rows (encoded by msgspec in C), in this
# order; PostgreSQL takes them apart. Thirteen typed arrays, encoded value by value by
# the driver, cost the event loop ten times as much per ping.
_COLUMNS = {
    "device_id": pg.UUID(as_uuid=True),
    "user_id": pg.UUID(as_uuid=True),
    "seq": sa.BigInteger(),
    "device_ts": sa.DateTime(timezone=True),
    "received_at": sa.DateTime(timezone=True),
    "lat": sa.Float(),
    "lon": sa.Float(),
    "accuracy_m": sa.Float(),
    "altitude_m": sa.Float(),
    "speed_mps": sa.Float(),
    "heading_deg": sa.Float(),
    "battery_pct": sa.Float(),
    # Comma-joined codes, or null.
    "suspect": sa.Text(),
    # Whether its (device, seq) may be stored already under another device time (`NewFix.recheck`).
    "recheck": sa.Boolean(),
}

_encoder = msgspec.json.Encoder()


def _build_store_statement():
    elements = (sa.func.jsonb_array_elements(sa.cast(sa.bindparam("rows", type_=sa.Text), pg.JSONB))
                .table_valued(sa.column("value", pg.JSONB)).render_derived(name="incoming"))
    row = {name: sa.cast(elements.c.value[index].astext, kind).label(name)
           for index, (name, kind) in enumerate(_COLUMNS.items())}
    rows = sa.select(*row.values()).subquery("row")
    stored = ("device_id", "user_id", "seq", "device_ts", "received_at")
    measures = ("accuracy_m", "altitude_m", "speed_mps", "heading_deg", "battery_pct")
    # Only a user not erased: the lock (FOR KEY SHARE) waits for an erasure holding the user's row
    # and then sees it erased, so a flush racing the erasure resurrects no fix (nor, below, the
    # last location). Rows of an erased user are dropped like duplicates: the phone is being closed.
    live_user = (sa.select(sa.literal(1)).select_from(users)
                 .where(users.c.user_id == rows.c.user_id, users.c.erased_at.is_(None))
                 .with_for_update(read=True, key_share=True).exists())
    # Only for a row marked to recheck: a probe of each partition's key, too dear for every ping.
    stored_already = (sa.select(sa.literal(1)).select_from(pings)
                      .where(pings.c.device_id == rows.c.device_id, pings.c.seq == rows.c.seq).exists())
    inserted = (
        pg.insert(pings)
        .from_select(
            [*stored, "location", *measures, "suspect"],
            sa.select(
                *(rows.c[name] for name in stored),
                point(rows.c.lat, rows.c.lon),
                *(rows.c[name] for name in measures),
                sa.func.string_to_array(rows.c.suspect, ","),
            ).where(live_user, sa.case((rows.c.recheck, ~stored_already), else_=sa.true())),
        )
        # No conflict target: the key is (device_id, seq) on a database before migration 0009 and
        # (device_id, seq, device_ts) after it (the partition key must be in it); a retried ping
        # repeats both its seq and its device time, so either key stores it once.
        .on_conflict_do_nothing()
        .returning(*(pings.c[name] for name in (*stored, "location", "accuracy_m", "speed_mps", "heading_deg",
                                                  "battery_pct", "suspect")))
        .cte("inserted")
    )
    newest = (
        sa.select(inserted)
        .where(inserted.c.suspect.is_(None))
        .ext(pg.distinct_on(inserted.c.user_id))
        .order_by(inserted.c.user_id, inserted.c.device_ts.desc())
        .subquery("newest")
    )
    moved_columns = ("user_id", "device_id", "device_ts", "received_at", "location", "accuracy_m", "speed_mps",
                     "heading_deg", "battery_pct")
    upsert = pg.insert(last_locations).from_select(
        list(moved_columns), sa.select(*(newest.c[name] for name in moved_columns))
    )
    excluded = upsert.excluded
    return upsert.on_conflict_do_update(
        index_elements=[last_locations.c.user_id],
        set_={name: excluded[name] for name in moved_columns if name != "user_id"},
        where=last_locations.c.device_ts < excluded.device_ts,
    ).returning(
        last_locations.c.user_id,
        sa.func.ST_Y(last_locations.c.location).label("lat"),
        sa.func.ST_X(last_locations.c.location).label("lon"),
        last_locations.c.accuracy_m,
        last_locations.c.device_ts,
    )


STORE = _build_store_statement()


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
    records = [
        (row.device_id, row.user_id, row.seq, row.fix.ts, row.received_at, row.fix.lat, row.fix.lon,
         row.fix.accuracy_m, row.fix.altitude_m, row.fix.speed_mps, row.fix.heading_deg, row.fix.battery_pct,
         ",".join(row.suspect) if row.suspect else None, row.recheck)
        for row in rows
    ]
    result = await connection.execute(STORE, {"rows": _encoder.encode(records).decode()})
    return [(moved.user_id, Fix(lat=moved.lat, lon=moved.lon, ts=moved.device_ts, accuracy_m=moved.accuracy_m))
            for moved in result]


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
