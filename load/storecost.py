"""`python -m load storecost`: PostgreSQL's CPU per stored ping, by statement shape, without a server.

Flushes of `rows` pings (one per user, as at 10 Hz with a 100 ms group commit) go through
`history.store` (one statement: an array per column read with `unnest`, INSERT ... ON CONFLICT DO
NOTHING, then the last locations' upsert; issue 12 measured it against the JSON array of rows it
replaced, 42 against 50 to 54 µs of PostgreSQL's CPU per row) and through COPY (asyncpg's
`copy_records_to_table` into a temporary stage, then the same INSERT ... SELECT and upsert
from the stage, in one transaction), interleaved A B A B on one database. What is measured is
the CPU of the connection's own backend (/proc of `pg_backend_pid()`), beside this process's
CPU (encoding, the driver), per row: neither is blurred by other users of a shared cluster.
The database must be at head and is left holding the rows (use a scratch one).
"""

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from geo.fix import Fix
from load.cpu import _cpu_s
from load.stats import table
from server.positions import history

# The stage has the JSON statement's columns; the insert and the upsert read it as they read `row`.
_STAGE = """CREATE TEMP TABLE IF NOT EXISTS ping_stage (device_id uuid, user_id uuid, seq bigint,
    device_ts timestamptz, received_at timestamptz, lat float8, lon float8, accuracy_m float8, altitude_m float8,
    speed_mps float8, heading_deg float8, battery_pct float8, suspect text, recheck boolean) ON COMMIT DELETE ROWS"""
_FROM_STAGE = """
WITH inserted AS (
  INSERT INTO pings (device_id, user_id, seq, device_ts, received_at, location, accuracy_m, altitude_m, speed_mps,
                     heading_deg, battery_pct, suspect)
  SELECT s.device_id, s.user_id, s.seq, s.device_ts, s.received_at, ST_SetSRID(ST_MakePoint(s.lon, s.lat), 4326),
         s.accuracy_m, s.altitude_m, s.speed_mps, s.heading_deg, s.battery_pct, string_to_array(s.suspect, ',')
  FROM ping_stage s
  WHERE EXISTS (SELECT 1 FROM users u WHERE u.user_id = s.user_id AND u.erased_at IS NULL FOR KEY SHARE)
    AND CASE WHEN s.recheck THEN NOT EXISTS (SELECT 1 FROM pings p WHERE p.device_id = s.device_id AND p.seq = s.seq)
        ELSE true END
  ON CONFLICT DO NOTHING
  RETURNING device_id, user_id, seq, device_ts, received_at, location, accuracy_m, speed_mps, heading_deg,
            battery_pct, suspect)
INSERT INTO last_locations (user_id, device_id, device_ts, received_at, location, accuracy_m, speed_mps, heading_deg,
                            battery_pct)
SELECT DISTINCT ON (user_id) user_id, device_id, device_ts, received_at, location, accuracy_m, speed_mps, heading_deg,
       battery_pct FROM inserted WHERE suspect IS NULL ORDER BY user_id, device_ts DESC
ON CONFLICT (user_id) DO UPDATE SET device_id = excluded.device_id, device_ts = excluded.device_ts,
  received_at = excluded.received_at, location = excluded.location, accuracy_m = excluded.accuracy_m,
  speed_mps = excluded.speed_mps, heading_deg = excluded.heading_deg, battery_pct = excluded.battery_pct
WHERE last_locations.device_ts < excluded.device_ts
RETURNING last_locations.user_id, ST_Y(last_locations.location), ST_X(last_locations.location),
  last_locations.accuracy_m, last_locations.device_ts"""


async def _store_by_copy(connection: AsyncConnection, rows: list[history.NewFix]) -> None:
    raw = (await connection.get_raw_connection()).driver_connection
    records = [(r.device_id, r.user_id, r.seq, r.fix.ts, r.received_at, r.fix.lat, r.fix.lon, r.fix.accuracy_m,
                r.fix.altitude_m, r.fix.speed_mps, r.fix.heading_deg, r.fix.battery_pct,
                ",".join(r.suspect) if r.suspect else None, r.recheck) for r in rows]
    async with raw.transaction():
        await raw.execute(_STAGE)
        await raw.copy_records_to_table("ping_stage", records=records)
        await raw.fetch(_FROM_STAGE)


async def _store_by_history(connection: AsyncConnection, rows: list[history.NewFix]) -> None:
    await history.store(connection=connection, rows=rows)


VARIANTS = {"history.store (unnest of arrays)": _store_by_history, "copy + insert from stage": _store_by_copy}


async def _run(url: str, *, users: int, flushes: int, rounds: int) -> list[dict[str, str]]:
    engine = create_async_engine(url, pool_size=1)
    try:
        async with engine.connect() as connection:
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            backend = await connection.scalar(sa.text("SELECT pg_backend_pid()"))
            people = [(uuid.uuid4(), uuid.uuid4()) for _ in range(users)]
            await connection.execute(sa.text("INSERT INTO users (user_id, name, phone) VALUES (:u, 'load', '+1')"),
                                     [{"u": user_id} for user_id, _ in people])
            seq, rows_out = 0, []
            for round_index in range(rounds):
                for label, variant in VARIANTS.items():
                    own_cpu, pg_cpu, started = time.process_time(), _cpu_s(backend), time.monotonic()
                    for _ in range(flushes):
                        now = datetime.now(UTC)
                        batch = [history.NewFix(device_id=device_id, user_id=user_id, seq=seq, received_at=now,
                                                fix=Fix(lat=25.03 + i * 1e-5, lon=121.56 + seq * 1e-7,
                                                        ts=now - timedelta(milliseconds=50), accuracy_m=8.0,
                                                        battery_pct=80.0), suspect=None)
                                 for i, (user_id, device_id) in enumerate(people)]
                        seq += 1
                        await variant(connection, batch)
                    stored = flushes * users
                    rows_out.append({"statement": label, "round": str(round_index + 1), "rows": f"{stored:,}",
                                     "pg µs/row": f"{1e6 * (_cpu_s(backend) - pg_cpu) / stored:.1f}",
                                     "client µs/row": f"{1e6 * (time.process_time() - own_cpu) / stored:.1f}",
                                     "wall µs/row": f"{1e6 * (time.monotonic() - started) / stored:.1f}"})
                    print(table(rows_out[-1:]), flush=True)
            return rows_out
    finally:
        await engine.dispose()


def run(*, url: str, users: int = 300, flushes: int = 100, rounds: int = 2) -> list[dict[str, str]]:
    rows = asyncio.run(_run(url, users=users, flushes=flushes, rounds=rounds))
    print("\nPostgreSQL CPU per stored ping, by statement\n" + table(rows), flush=True)
    return rows
